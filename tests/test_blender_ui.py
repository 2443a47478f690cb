"""The panel and preferences draw code, checked against Blender's UILayout API (bpy wheel).

Headless Blender has no windows, so draw() is called with a recording layout that refuses any
UILayout function or keyword argument Blender does not have (catches typos and API drift
between Blender versions), for every photo/rig choice and job state. Runs in a subprocess.
"""
import subprocess
import sys

import pytest

from conftest import run_blender_scenario


def scenario():
    import bpy, addon_utils, sys
    mod = addon_utils.enable("gen3dface.blender_addon", default_set=True)
    print("enabled", mod, "gen3dface.blender_addon" in bpy.context.preferences.addons)
    from gen3dface.blender_addon.blender import panel, runtime, preferences
    from gen3dface.blender_addon.core.job import JobTracker
    UIL = bpy.types.UILayout.bl_rna.functions
    class Rec:
        def __init__(self): self.calls=[]
        def __getattr__(self, name):
            if name in ("enabled","scale_y","use_property_split","alignment"): return None
            f = UIL.get(name)
            assert f is not None, f"UILayout has no {name}"
            params = {p.identifier for p in f.parameters}
            def call(*a, **kw):
                bad = set(kw) - params
                assert not bad, f"{name}: unknown kwargs {bad}"
                self.calls.append(name)
                return Rec()
            return call
        def __setattr__(self, k, v): object.__setattr__(self, k, v)
    class P: pass
    p = P(); p.layout = Rec(); p.draw_job = lambda *a: panel.GEN3DFACE_PT_main.draw_job(p, *a)
    ctx = bpy.context
    props = ctx.scene.gen3dface
    for src in ("FILE","IMAGE"):
      for rig in ("RING","COLLECTION","NONE"):
        props.photo_source=src; props.rig_source=rig
        panel.GEN3DFACE_PT_main.draw(p, ctx)
    # with a job in states
    from gen3dface.blender_addon.blender.runtime import ActiveJob, _Session
    from gen3dface.blender_addon.core.settings import ImportSettings
    t=JobTracker(); t.start(); t.progress("fit",0.5,"fitting")
    _Session.job = ActiveJob(t, None, ImportSettings(), "x", "Scene")
    panel.GEN3DFACE_PT_main.draw(p, ctx)
    t.failed("NO_FACE","no face")
    panel.GEN3DFACE_PT_main.draw(p, ctx)
    prefs = preferences.get()
    q=P(); q.layout=Rec()
    preferences.GEN3DFACE_AP_preferences.draw.__get__(prefs)  # bound
    type(prefs).draw(type("X",(),{"layout":Rec(), **{k:getattr(prefs,k) for k in ("address","key_file","connect_timeout","job_timeout","start_local_backend","local_python","local_port","local_device")}})(), ctx)
    print("draw ok")
    addon_utils.disable("gen3dface.blender_addon")
    print("disabled ok")


@pytest.mark.blender
def test_panel_and_preferences_draw_with_real_uilayout_api(blender_python):
    pytest.importorskip("bpy")
    p = subprocess.run([blender_python, __file__], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "draw ok" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]


if __name__ == "__main__":
    run_blender_scenario(scenario)
