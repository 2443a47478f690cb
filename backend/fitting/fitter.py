"""Fit a morphable head (pose, focal length, identity, expression) to 2D face landmarks.

Model: landmark l sits at p_l = sum_k b_lk (mean + identity_basis . alpha + expression_basis .
beta)[tri_lk] on the head (head frame, metres); the camera is OpenCV pinhole with square pixels
and the principal point at the image centre: q = R p + t, (u, v) = f q_xy / q_z + (cx, cy).

Solver: Levenberg-Marquardt in numpy with an analytic Jacobian, iteratively re-weighted for a
Huber loss on each landmark's reprojection distance, with
- a N(0, 1) prior on the identity coefficients (first K of the model's modes),
- an L2 + L1 (sparsity) prior on the expression weights, kept in [0, 1] (projected steps),
- a weak log-normal prior on the focal length around a field of view of `fov_prior_deg`,
- contour (face-oval) landmarks re-picked each iteration on the model's silhouette
  (`contour.py`), far-side ones down-weighted as the head turns away.
Rotations are updated on the manifold (R <- exp(dw) R). The CancelToken is checked before
every iteration and every damped step (a few milliseconds apart), so a cancel stops a fit at
once; building a `HeadFitter` (~0.5 s, once per model) is the pipeline's to make cancellable. Residuals are measured in units of the
expected landmark noise (`landmark_sigma` times the face size), so the priors weigh the same
against the landmarks at any photo resolution.

Outputs (`FitResult`): posed vertices in the HEAD frame (not camera space), OpenCV w2c whose
world is the head frame, pixel intrinsics of the original photo.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import scipy.linalg

from ..camera import PinholeCamera
from ..contracts import CancelToken, NullSink, PipelineError, ProgressSink
from ..face.landmarks import LEFT_IRIS, RIGHT_IRIS
from .contour import ContourLines, build_contour_lines, pick_silhouette
from .correspondence import ICT_CORRESPONDENCE, LandmarkMapping, load_mapping


@dataclass
class FitConfig:
    n_identity: int = 100              # identity coefficients fitted (first K modes)
    fit_expression: bool = True
    pose_iterations: int = 8           # stage 1: pose + focal, neutral shape
    iterations: int = 30               # stage 2: everything
    identity_prior: float = 0.2        # weight of |alpha|^2 (coefficients ~ N(0, 1))
    expression_l2: float = 10.0        # weight of |beta|^2 (at 0.3 weights saturated on noise)
    expression_l1: float = 0.3         # weight of sum(beta) (sparsity; beta >= 0)
    fov_prior_deg: float = 30.0        # horizontal field of view the focal prior centres on
    distance_prior_m: float = 1.5      # > 0: centre it instead on the focal at which the mean
                                       # face, this far from the camera, spans the landmarks
                                       # (a cropped photo keeps the perspective it was taken
                                       # with; a field of view prior reads a tight crop as a
                                       # camera a hand's width from the face)
    focal_prior: float = 20.0          # weight of (log f - log f0)^2 (sigma ~0.16 in log f)
    landmark_sigma: float = 0.01       # expected landmark noise, as a fraction of the face size
    huber_sigmas: float = 2.0          # Huber threshold, in units of landmark_sigma
    contour_weight: float = 0.5        # weight of face-oval landmarks
    iris_weight: float = 0.3           # weight of the 10 iris landmarks
    far_contour_zero_deg: float = 50.0  # far-side contour weight reaches ~0 at this yaw
    symmetry_weight: float = 0.3       # weight of (beta_xLeft - beta_xRight)^2: faces move both
                                       # sides together unless the landmarks insist
    gaze_from_iris: bool = True        # eyeLook* from the irises (gaze.py), not from the lids'
                                       # landmarks: they are held out of the landmark fit
    mapping_path: str | None = None    # correspondence file (default: the ICT one)


@dataclass
class FitResult:
    vertices: np.ndarray               # (N, 3) float32 posed head, metres, head frame
    identity: np.ndarray               # (K,) float32
    expression: np.ndarray             # (E,) float32 in [0, 1]
    expression_names: list[str]
    camera: PinholeCamera              # the photo's: OpenCV world(head frame)-to-camera,
                                       # original photo pixels
    landmark_error_px: float           # mean reprojection distance over the 478 landmarks
    landmark_error_median_px: float
    residuals_px: np.ndarray           # (478, 2) projected - detected, pixels
    projected: np.ndarray              # (478, 2) projected landmarks, pixels
    iterations: int
    time_s: float
    info: dict = field(default_factory=dict)

    @property
    def w2c(self) -> np.ndarray:
        """(4, 4) float64 OpenCV world(head frame)-to-camera of the photo."""
        return self.camera.w2c

    def coefficients(self) -> dict:
        return {"identity": [float(x) for x in self.identity],
                "expression": {n: float(x) for n, x in zip(self.expression_names, self.expression)}}


def so3_exp(w: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(w, np.float64).reshape(3, 1))[0]


def _skew(v: np.ndarray) -> np.ndarray:
    """(n, 3) -> (n, 3, 3) cross-product matrices."""
    z = np.zeros(len(v))
    return np.stack([np.stack([z, -v[:, 2], v[:, 1]], -1),
                     np.stack([v[:, 2], z, -v[:, 0]], -1),
                     np.stack([-v[:, 1], v[:, 0], z], -1)], 1)


def yaw_of(rot: np.ndarray) -> float:
    """Signed yaw (degrees) of the head seen by the camera: the angle of the head's forward
    (+Z) axis from the direction back to the camera, about the camera's vertical; positive
    when the camera sees more of the subject's left (+X) side."""
    fwd = rot[:, 2]                        # head +Z in camera coordinates
    return float(np.degrees(np.arctan2(-fwd[0], -fwd[2])))


def _solve_positive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with a @ x = b for a symmetric positive definite `a`: LAPACK's Cholesky (potrf, then
    potrs), the same arithmetic as scipy.linalg.solve(assume_a="pos") and so the same x to
    the bit, without its condition-number estimate (pocon): 0.3 against 2.3 ms for the
    fitter's 250-unknown steps on the 2-core dev machine."""
    return scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, check_finite=False), b,
                                  check_finite=False)


class HeadFitter:
    """Fits a `HeadModel` to a `FaceAnalysis` (or raw landmarks). Build once, fit many photos:
    the landmark bases are precomputed here (~0.1 s). `fit` only reads this state, so one
    fitter may serve several threads."""

    def __init__(self, head_model, config: FitConfig | None = None,
                 mapping: LandmarkMapping | None = None):
        self.model = head_model
        self.config = cfg = config or FitConfig()
        self.mapping = mapping or load_mapping(cfg.mapping_path or ICT_CORRESPONDENCE)
        if self.mapping.n_vertices != head_model.n_vertices:
            raise ValueError(f"landmark mapping is for a {self.mapping.n_vertices}-vertex "
                             f"{self.mapping.head_model}, the head model has "
                             f"{head_model.n_vertices} vertices")
        m = self.mapping
        self.k = min(cfg.n_identity, head_model.n_identity)
        self.e = head_model.n_expressions if cfg.fit_expression else 0
        # Landmark bases: mean (L, 3), identity (L, 3, K), expression (L, 3, E).
        self.l_mean = m.points(head_model.vertices.astype(np.float64))
        ident = head_model.identity_basis[:self.k].astype(np.float64)
        expr = head_model.expression_basis[:self.e].astype(np.float64)
        self.l_id = np.moveaxis(m.points(ident), 0, -1)
        self.l_ex = np.moveaxis(m.points(expr), 0, -1)
        face = head_model.vertices_of_groups("M_Face")
        rows = np.nonzero(m.contour)[0]
        self.lines: ContourLines = build_contour_lines(
            head_model.vertices.astype(np.float64), face, self.l_mean[rows], rows)
        vs = self.lines.vertex_set
        self.c_mean = head_model.vertices[vs].astype(np.float64)
        self.c_id = np.moveaxis(head_model.identity_basis[:self.k, vs].astype(np.float64), 0, -1)
        self.c_ex = np.moveaxis(head_model.expression_basis[:self.e, vs].astype(np.float64), 0, -1)
        self.vs_index = {int(v): i for i, v in enumerate(vs)}
        self.expression_names = list(head_model.expression_names[:self.e])
        # the mean face's landmark extent (metres), as face_size measures it in the photo
        self.face_size_m = float(np.ptp(self.l_mean[~m.iris][:, :2], axis=0).max())
        # Gaze comes from the irises: eyeLook* take no part in explaining the landmarks (their
        # bases are zeroed here, so the priors hold them at 0 until fit_gaze sets them).
        self.gaze_rows = np.array([i for i, n in enumerate(self.expression_names)
                                   if n.startswith("eyeLook")], int)
        if cfg.gaze_from_iris and len(self.gaze_rows):
            self.l_ex[..., self.gaze_rows] = 0.0
            self.c_ex[..., self.gaze_rows] = 0.0
        rows = np.flatnonzero(m.iris)                 # the iris landmarks, for the gaze fit
        self.iris_mapping = LandmarkMapping(m.landmark_ids[rows], m.triangles[rows],
                                            m.barycentric[rows], m.contour[rows], m.iris[rows],
                                            m.head_model, m.n_vertices)
        self.iris_sides = np.array(["Right" if l in RIGHT_IRIS else "Left"
                                    for l in self.iris_mapping.landmark_ids])
        names = self.expression_names
        self.sym_pairs = np.array([(i, names.index(n[:-4] + "Right"))
                                   for i, n in enumerate(names)
                                   if n.endswith("Left") and n[:-4] + "Right" in names],
                                  int).reshape(-1, 2)

    def _fit_gaze(self, landmarks, rest, camera: PinholeCamera):
        """The shared gaze from the iris landmarks (gaze.fit_gaze) on the fitted head `rest`
        (N, 3), which has no eyeLook* weight."""
        from ..texture.eyes import eyeball
        from .gaze import eye_rotation_offsets, fit_gaze

        sub = self.iris_mapping
        offsets = {}
        for e, (ids, d) in eye_rotation_offsets(self.model, rest).items():
            full = np.zeros_like(rest)
            full[ids] = d
            offsets[self.model.expression_names[e]] = sub.points(full)
        cam = camera.center
        facing = {}
        for s in ("Left", "Right"):
            eye = eyeball(rest, self.model, s)
            if eye is not None:
                to_cam = (cam - eye.centre) / np.linalg.norm(cam - eye.centre)
                facing[s] = max(float(eye.axis @ to_cam), 0.0) ** 2 + 1e-3
        return fit_gaze(np.asarray(landmarks, np.float64)[sub.landmark_ids], sub.points(rest),
                        offsets, self.iris_sides, camera, facing)

    # ---------------------------------------------------------------------------------------
    def fit(self, analysis, sink: ProgressSink | None = None,
            cancel: CancelToken | None = None) -> FitResult:
        """Fit to a FaceAnalysis (landmarks (478, 2) photo pixels, image_size (w, h))."""
        return self.fit_landmarks(analysis.landmarks, analysis.image_size, sink, cancel)

    def fit_landmarks(self, landmarks: np.ndarray, image_size: tuple[int, int],
                      sink: ProgressSink | None = None,
                      cancel: CancelToken | None = None) -> FitResult:
        """Fit to raw landmarks ((478, 2) photo pixels) of a photo of `image_size` (w, h):
        check them, start from a PnP pose of the mean face, run the two Levenberg-Marquardt
        stages, then pose the head, add its gaze and measure the fit."""
        t0 = time.perf_counter()
        sink = sink or NullSink()
        cancel = cancel or CancelToken()
        problem = _LandmarkProblem(self, landmarks, image_size)
        state, iterations = self._solve(problem, problem.initial_pose(), sink, cancel)
        cancel.raise_if_cancelled()
        return self._result(problem, state, iterations, t0)

    def _solve(self, problem: _LandmarkProblem, state: tuple, sink: ProgressSink,
               cancel: CancelToken) -> tuple[tuple, int]:
        """The staged solver: `pose_iterations` of pose + focal on the neutral shape, then up
        to `iterations` of everything, stopping after two iterations in a row that found no
        better step. The damping carries over between iterations and stages. Returns the
        final state and the number of iterations run."""
        cfg = self.config
        mu = 1e-3
        total = cfg.pose_iterations + cfg.iterations
        it = 0
        misses = 0
        for it in range(total):
            cancel.raise_if_cancelled()
            free_shape = it >= cfg.pose_iterations
            state, mu, accepted = self._iterate(problem, state, mu, free_shape, cancel)
            sink.progress("fit", (it + 1) / total, f"iteration {it + 1}/{total}")
            misses = 0 if accepted else misses + 1
            if misses >= 2 and free_shape:
                break
        return state, it + 1

    def _iterate(self, problem: _LandmarkProblem, state: tuple, mu: float,
                 free_shape: bool, cancel: CancelToken) -> tuple[tuple, float, bool]:
        """One iteration: re-pick the contour landmarks and re-weight the residuals (IRLS) at
        `state`, linearise, then try up to 8 damped steps, raising the damping `mu` until one
        lowers the cost. Returns (state, mu, accepted)."""
        rot, trans, log_f, alpha, beta = state
        geom = problem.geometry(alpha, beta, rot, trans, np.exp(log_f))
        _, _, uv, _ = problem.evaluate(state, geom, problem.base_w, False, free_shape)
        weights = problem.robust_weights(uv, rot)
        cost, res, uv, jac = problem.evaluate(state, geom, weights, True, free_shape)
        grad = jac.T @ res
        if free_shape and self.e:
            grad[7 + self.k:] += self.config.expression_l1
        hess = jac.T @ jac
        for _ in range(8):
            cancel.raise_if_cancelled()
            a = hess + mu * np.diag(np.diag(hess) + 1e-9)
            step = -_solve_positive(a, grad)
            cand = problem.apply_step(state, step, free_shape)
            if cand[1][2] <= 1e-3:
                mu *= 10
                continue
            c_cost = problem.evaluate(cand, geom, weights, False, free_shape)[0]
            if c_cost < cost:
                return cand, max(mu / 3, 1e-7), True
            mu *= 10
        return state, mu, False

    def _result(self, problem: _LandmarkProblem, state: tuple, iterations: int,
                t0: float) -> FitResult:
        """The fit's camera, posed head (with its gaze) and reprojection error at `state`."""
        cfg, m = self.config, self.mapping
        rot, trans, log_f, alpha, beta = state
        f = float(np.exp(log_f))
        geom = problem.geometry(alpha, beta, rot, trans, f)
        _, _, uv_rows, _ = problem.evaluate(state, geom, problem.base_w, False, True)
        obs_all = problem.obs_all
        projected = np.full((len(obs_all), 2), np.nan)
        projected[m.landmark_ids] = uv_rows
        resid = projected - obs_all
        dist = np.hypot(*resid[m.landmark_ids].T)
        full_alpha = np.zeros(self.k)
        full_alpha[:] = alpha
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = rot, trans
        camera = PinholeCamera(w2c, f, f, float(problem.cx), float(problem.cy),
                               int(problem.w_img), int(problem.h_img))
        vertices = self.model.posed(full_alpha, beta if self.e else None)
        info = {"yaw_deg": yaw_of(rot), "face_size_px": problem.face_size,
                "distance_m": float(np.linalg.norm(trans))}
        if cfg.gaze_from_iris and len(self.gaze_rows):
            vertices, beta, info["gaze"] = self._add_gaze(obs_all, vertices, beta, camera)
        return FitResult(
            vertices=vertices, identity=alpha.astype(np.float32),
            expression=np.asarray(beta, np.float32), expression_names=self.expression_names,
            camera=camera,
            landmark_error_px=float(dist.mean()), landmark_error_median_px=float(np.median(dist)),
            residuals_px=resid, projected=projected, iterations=iterations,
            time_s=time.perf_counter() - t0, info=info)

    def _add_gaze(self, landmarks: np.ndarray, vertices: np.ndarray, beta: np.ndarray,
                  camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray, dict]:
        """Set eyeLook* from the irises on the fitted head `vertices`, which the landmark fit
        posed without a gaze (it held eyeLook* at 0). Returns (vertices, beta, gaze info)."""
        gaze = self._fit_gaze(landmarks, vertices.astype(np.float64), camera)
        beta = np.array(beta, np.float64)
        g = self.gaze_rows
        beta[g] = [gaze.weights.get(self.expression_names[i], 0.0) for i in g]
        vertices = (vertices + np.tensordot(beta[g], self.model.expression_basis[g],
                                            axes=1)).astype(np.float32)
        return vertices, beta, gaze.info()


class _LandmarkProblem:
    """One fit's least-squares problem: the detected landmarks and the photo (checked here),
    the residual scale, the focal prior and the landmarks' base weights, and the model the
    solver iterates on: landmark geometry, residuals and their Jacobian, robust weights and
    the parameter update. A state is (rot, trans, log_f, alpha, beta); the parameter vector of
    a step is [rotation (3), translation (3), log focal (1), identity (K), expression (E)]."""

    def __init__(self, fitter: HeadFitter, landmarks: np.ndarray, image_size: tuple[int, int]):
        self.fitter = fitter
        cfg, m = fitter.config, fitter.mapping
        obs_all = np.asarray(landmarks, np.float64)
        if obs_all.ndim != 2 or obs_all.shape[1] != 2 or len(obs_all) <= m.landmark_ids.max():
            raise PipelineError("BAD_REQUEST", f"expected (478, 2) landmarks, got {obs_all.shape}")
        if not np.isfinite(obs_all).all():
            raise PipelineError("BAD_REQUEST", "landmarks contain NaN or infinite values")
        self.obs_all = obs_all
        self.obs = obs = obs_all[m.landmark_ids]
        w_img, h_img = int(image_size[0]), int(image_size[1])
        self.w_img, self.h_img = w_img, h_img
        self.cx, self.cy = w_img / 2.0, h_img / 2.0
        self.face_size = face_size = float(np.ptp(obs[~m.iris], axis=0).max())
        if face_size <= 1.0:
            raise PipelineError("NO_FACE", "the landmarks span less than a pixel")
        self.scale = 1.0 / (cfg.landmark_sigma * face_size)
        f0 = 0.5 * w_img / np.tan(np.radians(cfg.fov_prior_deg) / 2)
        if cfg.distance_prior_m > 0:
            f0 = face_size * cfg.distance_prior_m / fitter.face_size_m
        self.f0 = f0
        base_w = np.ones(len(m))
        base_w[m.contour] = cfg.contour_weight
        # With gaze from the irises, the irises say where the eyes look, not where the head
        # is: the rest-pose eyeballs of the landmark fit would pull the head toward the gaze.
        base_w[m.iris] = 0.0 if cfg.gaze_from_iris else cfg.iris_weight
        self.base_w = base_w

    def initial_pose(self) -> tuple:
        """The starting state: PnP on the neutral shape's fixed (non-contour) landmarks at the
        prior's focal, neutral identity and expression."""
        hf, m = self.fitter, self.fitter.mapping
        sel = ~m.contour & ~m.iris
        kmat = np.array([[self.f0, 0, self.cx], [0, self.f0, self.cy], [0, 0, 1.0]])
        ok, rvec, tvec = cv2.solvePnP(hf.l_mean[sel], self.obs[sel], kmat, None,
                                      flags=cv2.SOLVEPNP_SQPNP)
        rot = so3_exp(rvec.ravel()) if ok else np.diag([1.0, -1.0, -1.0])
        trans = tvec.ravel() if ok and tvec.ravel()[2] > 0 else np.array([0, 0, 0.6])
        return rot, trans, np.log(self.f0), np.zeros(hf.k), np.zeros(hf.e)

    def geometry(self, alpha, beta, rot, trans, focal):
        """Landmark 3D points and their bases with contour rows re-picked."""
        hf = self.fitter
        p_mean, p_id, p_ex = hf.l_mean.copy(), hf.l_id.copy(), hf.l_ex.copy()
        if len(hf.lines.rows):
            posed = hf.c_mean + hf.c_id @ alpha + (hf.c_ex @ beta if hf.e else 0)
            picked = pick_silhouette(hf.lines, posed, rot, trans, focal, self.cx, self.cy)
            li = np.array([hf.vs_index[int(v)] for v in picked])
            r = hf.lines.rows
            p_mean[r], p_id[r], p_ex[r] = hf.c_mean[li], hf.c_id[li], hf.c_ex[li]
        return p_mean, p_id, p_ex

    def evaluate(self, state, geom, weights, with_jac, free_shape):
        """(cost, residuals, projected landmarks (L, 2), Jacobian or None) at `state`: the
        weighted landmark residuals in noise units, then the identity, expression, symmetry
        and focal priors; the Jacobian's shape columns only when `free_shape`."""
        hf, cfg = self.fitter, self.fitter.config
        cx, cy, obs, scale, f0 = self.cx, self.cy, self.obs, self.scale, self.f0
        rot, trans, log_f, alpha, beta = state
        p_mean, p_id, p_ex = geom
        p = p_mean + p_id @ alpha + (p_ex @ beta if hf.e else 0)
        rp = p @ rot.T
        q = rp + trans
        f = np.exp(log_f)
        z = q[:, 2:3]
        uv = f * q[:, :2] / z + np.array([cx, cy])
        sw = np.sqrt(weights)[:, None]
        r_lm = (sw * (uv - obs) * scale).ravel()
        d_id = alpha * np.sqrt(cfg.identity_prior)
        d_ex = beta * np.sqrt(cfg.expression_l2)
        d_f = np.array([(log_f - np.log(f0)) * np.sqrt(cfg.focal_prior)])
        sp = hf.sym_pairs
        d_sym = (beta[sp[:, 0]] - beta[sp[:, 1]]) * np.sqrt(cfg.symmetry_weight) \
            if hf.e else np.zeros(0)
        res = np.concatenate([r_lm, d_id, d_ex, d_sym, d_f])
        cost = 0.5 * res @ res + cfg.expression_l1 * beta.sum()
        if not with_jac:
            return cost, res, uv, None
        n = len(q)
        # d(uv)/dq: (n, 2, 3)
        duv_dq = np.zeros((n, 2, 3))
        duv_dq[:, 0, 0] = f / z[:, 0]
        duv_dq[:, 1, 1] = f / z[:, 0]
        duv_dq[:, 0, 2] = -f * q[:, 0] / z[:, 0] ** 2
        duv_dq[:, 1, 2] = -f * q[:, 1] / z[:, 0] ** 2
        cols = [duv_dq @ -_skew(rp), duv_dq, (uv - np.array([cx, cy]))[:, :, None]]
        if free_shape:
            cols.append(duv_dq @ np.einsum("ij,njk->nik", rot, p_id))
            if hf.e:
                cols.append(duv_dq @ np.einsum("ij,njk->nik", rot, p_ex))
        j_lm = np.concatenate(cols, axis=2) * (sw[:, :, None] * scale)
        j_lm = j_lm.reshape(2 * n, -1)
        npar = j_lm.shape[1]
        k, e = hf.k, hf.e
        j_prior = np.zeros((len(res) - 2 * n, npar))
        if free_shape:
            j_prior[np.arange(k), 7 + np.arange(k)] = np.sqrt(cfg.identity_prior)
            j_prior[k + np.arange(e), 7 + k + np.arange(e)] = np.sqrt(cfg.expression_l2)
            if e and len(sp):
                rows = k + e + np.arange(len(sp))
                j_prior[rows, 7 + k + sp[:, 0]] = np.sqrt(cfg.symmetry_weight)
                j_prior[rows, 7 + k + sp[:, 1]] = -np.sqrt(cfg.symmetry_weight)
        j_prior[-1, 6] = np.sqrt(cfg.focal_prior)
        return cost, res, uv, np.concatenate([j_lm, j_prior])

    def robust_weights(self, uv, rot):
        """The base weights times Huber's on each landmark's reprojection distance, with the
        far-side contour faded out as the head turns away (its landmarks are guesses then)."""
        hf, cfg = self.fitter, self.fitter.config
        huber = cfg.huber_sigmas
        d = np.hypot(*((uv - self.obs) * self.scale).T)
        w = self.base_w * np.where(d <= huber, 1.0, huber / np.maximum(d, 1e-12))
        yaw = yaw_of(rot)
        if len(hf.lines.rows):
            r = hf.lines.rows
            far = hf.lines.side * np.sign(yaw) < 0
            fade = np.clip(1 - abs(yaw) / cfg.far_contour_zero_deg, 0.05, 1.0)
            w[r[far]] *= fade
        return w

    def apply_step(self, state, step, free_shape):
        """The state moved by `step` (rotation on the manifold, expression kept in [0, 1])."""
        k = self.fitter.k
        rot, trans, log_f, alpha, beta = state
        rot = so3_exp(step[:3]) @ rot
        trans = trans + step[3:6]
        log_f = log_f + step[6]
        if free_shape:
            alpha = alpha + step[7:7 + k]
            beta = np.clip(beta + step[7 + k:], 0.0, 1.0)
        return rot, trans, log_f, alpha, beta
