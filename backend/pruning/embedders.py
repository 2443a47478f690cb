"""Pluggable embedders for the paper's data pruning.

Two roles (duck-typed protocols; tests use small deterministic ones):
    ImageTextEmbedder   encode_images(list of HxWx3 uint8 RGB) -> (N, D) float32, L2-normalised
                        encode_texts(list[str]) -> (M, D) float32, L2-normalised
                        logit_scale: float   (CLIP's learned temperature, ~100)
    FaceEmbedder        embed(list of HxWx3 uint8 RGB face crops) -> (N, D), L2-normalised

Implementations that load the user's weights (nothing is downloaded by the project; hub ids
work where the machine can reach the hub or has them cached):
    TransformersClip(path_or_hub_id)   transformers CLIPModel + CLIPProcessor
    OpenClip(model_name, pretrained)   open_clip (pip install open_clip_torch)
    ArcFaceOnnx(model.onnx)            an InsightFace-style ArcFace ONNX model (onnxruntime):
                                       112x112 RGB, (x - 127.5) / 127.5, NCHW
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


class ImageTextEmbedder(Protocol):
    logit_scale: float

    def encode_images(self, images: Sequence[np.ndarray]) -> np.ndarray: ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...


class FaceEmbedder(Protocol):
    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray: ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def zero_shot_probabilities(embedder: ImageTextEmbedder, images: Sequence[np.ndarray],
                            class_prompts: Sequence[str]) -> np.ndarray:
    """(N, C) softmax over classes of logit_scale * cosine(image, prompt): CLIP zero-shot."""
    img = l2_normalise(embedder.encode_images(images))
    txt = l2_normalise(embedder.encode_texts(class_prompts))
    logits = float(embedder.logit_scale) * img @ txt.T
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


class TransformersClip:
    """CLIP from transformers (local folder or hub id), e.g. openai/clip-vit-large-patch14."""

    def __init__(self, path_or_id: str, device: str = "cpu", local_files_only: bool = False):
        import torch
        from transformers import CLIPModel, CLIPProcessor
        self.torch = torch
        self.device = device
        self.model = CLIPModel.from_pretrained(path_or_id, local_files_only=local_files_only)
        self.model.eval().to(device)
        self.processor = CLIPProcessor.from_pretrained(path_or_id,
                                                       local_files_only=local_files_only)
        self.logit_scale = float(self.model.logit_scale.exp())

    @staticmethod
    def _features(out):
        # transformers 5 may return a model output instead of a bare tensor
        return out if hasattr(out, "shape") else out.pooler_output

    def encode_images(self, images):
        with self.torch.no_grad():
            batch = self.processor(images=list(images), return_tensors="pt").to(self.device)
            f = self._features(self.model.get_image_features(**batch))
        return l2_normalise(f.float().cpu().numpy())

    def encode_texts(self, texts):
        with self.torch.no_grad():
            batch = self.processor(text=list(texts), return_tensors="pt",
                                   padding=True).to(self.device)
            f = self._features(self.model.get_text_features(**batch))
        return l2_normalise(f.float().cpu().numpy())


class OpenClip:
    """open_clip models, e.g. OpenClip("ViT-H-14", "laion2b_s32b_b79k") or a local .bin/.pt."""

    def __init__(self, model_name: str, pretrained: str, device: str = "cpu"):
        try:
            import open_clip
        except ImportError:
            raise RuntimeError("OpenClip needs the open_clip package: "
                               "pip install open_clip_torch") from None
        import torch
        self.torch, self.device = torch, device
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, device=device)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.logit_scale = float(self.model.logit_scale.exp())

    def encode_images(self, images):
        from PIL import Image
        x = self.torch.stack([self.preprocess(Image.fromarray(np.asarray(i)))
                              for i in images]).to(self.device)
        with self.torch.no_grad():
            return l2_normalise(self.model.encode_image(x).float().cpu().numpy())

    def encode_texts(self, texts):
        with self.torch.no_grad():
            t = self.tokenizer(list(texts)).to(self.device)
            return l2_normalise(self.model.encode_text(t).float().cpu().numpy())


class ArcFaceOnnx:
    """An ArcFace ONNX model (InsightFace's w600k_r50.onnx / arcface_r100 layout)."""

    def __init__(self, model_path: str, providers: Sequence[str] | None = None, size: int = 112):
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeError("ArcFaceOnnx needs onnxruntime: pip install onnxruntime "
                               "(onnxruntime-gpu on CUDA hosts)") from None
        self.session = ort.InferenceSession(str(model_path),
                                            providers=list(providers or ["CPUExecutionProvider"]))
        self.input_name = self.session.get_inputs()[0].name
        self.size = size

    def embed(self, images):
        from PIL import Image
        batch = np.stack([
            np.asarray(Image.fromarray(np.asarray(i)).convert("RGB").resize(
                (self.size, self.size), Image.BILINEAR), np.float32)
            for i in images])
        x = ((batch - 127.5) / 127.5).transpose(0, 3, 1, 2)
        return l2_normalise(self.session.run(None, {self.input_name: x})[0])
