"""sim.libero.render: frustum culling and vertex clustering against their naive twins, culled renders
bit-identical to robosuite's, the fast quality's decimated meshes leaving physics untouched."""

import numpy as np
import pytest

pytest.importorskip("mujoco", reason="needs the sim extra (scripts/setup.sh installs it)")

from sim.libero.render import (  # noqa: E402
    boxes_outside,
    boxes_outside_naive,
    cluster_mesh,
    cluster_mesh_naive,
    frustum_planes,
)


def _random_camera(rng):
    fwd = rng.normal(size=3)
    fwd /= np.linalg.norm(fwd)
    up = np.cross(np.cross(fwd, rng.normal(size=3)), fwd)
    up /= np.linalg.norm(up)
    near, top = rng.uniform(0.01, 0.1), rng.uniform(0.005, 0.08)
    return dict(
        pos=rng.normal(size=3), forward=fwd, up=up, near=near, far=rng.uniform(2, 10), top=top, bottom=-top
    )


def test_frustum_planes_contain_exactly_the_view_volume():
    rng = np.random.default_rng(0)
    for _ in range(20):
        cam = _random_camera(rng)
        planes = frustum_planes(**cam, aspect=1.0)
        right = np.cross(cam["forward"], cam["up"])
        # camera-frame points: depth z, image-plane coordinates scaled to depth
        z = rng.uniform(cam["near"], cam["far"], 500)
        sx, sy = rng.uniform(-1.5, 1.5, (2, 500))
        half = cam["top"] / cam["near"]
        world = cam["pos"] + (sx * half * z)[:, None] * right + (sy * half * z)[:, None] * cam["up"]
        world += z[:, None] * cam["forward"]
        inside = np.all(world @ planes[:, :3].T + planes[:, 3] <= 1e-12, axis=1)
        np.testing.assert_array_equal(inside, (np.abs(sx) <= 1) & (np.abs(sy) <= 1))


def test_boxes_outside_matches_corner_twin_on_random_boxes():
    rng = np.random.default_rng(1)
    for _ in range(5):
        planes = frustum_planes(**_random_camera(rng), aspect=rng.uniform(0.5, 2))
        g = 300
        q, _ = np.linalg.qr(rng.normal(size=(g, 3, 3)))
        centers = rng.normal(size=(g, 3)) * 2
        halves = rng.uniform(0.001, 0.5, (g, 3))
        fast = boxes_outside(planes, centers, q, halves, margin=1e-3)
        naive = boxes_outside_naive(planes, centers, q, halves, margin=1e-3)
        np.testing.assert_array_equal(fast, naive)
        assert 0 < fast.sum() < g  # both kinds occur, so the comparison means something


def _random_mesh(rng, f=400, uv=True):
    pos = rng.uniform(-0.05, 0.05, (f, 3, 3))
    nrm = rng.normal(size=(f, 3, 3))
    nrm /= np.linalg.norm(nrm, axis=2, keepdims=True)
    return pos, nrm, (rng.uniform(0, 1, (f, 3, 2)) if uv else None)


def _canonical(mesh):
    """Triangles as sorted tuples of their vertices' attributes (vertex numbering is arbitrary)."""
    cols = [mesh.pos, mesh.normal] + ([mesh.uv] if mesh.uv is not None else [])
    attrs = np.concatenate(cols, axis=1)
    return np.array(sorted(sorted(map(tuple, attrs[t])) for t in mesh.tri))


@pytest.mark.parametrize("uv", [True, False])
def test_cluster_mesh_matches_dictionary_twin(uv):
    rng = np.random.default_rng(2 + uv)
    pos, nrm, tex = _random_mesh(rng, uv=uv)
    fast, naive = cluster_mesh(pos, nrm, tex, 0.02), cluster_mesh_naive(pos, nrm, tex, 0.02)
    assert 0 < len(fast.tri) < len(pos)  # some triangles collapse, some survive
    a, b = _canonical(fast), _canonical(naive)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_cluster_mesh_with_tiny_cells_keeps_the_mesh():
    rng = np.random.default_rng(4)
    pos, nrm, tex = _random_mesh(rng, f=200)
    out = cluster_mesh(pos, nrm, tex, 1e-9)
    assert len(out.tri) == len(pos)
    ref = np.sort(pos.reshape(-1, 3), axis=0)  # float64 reference: every corner survives unmoved
    got = np.sort(out.pos[out.tri].reshape(-1, 3), axis=0)
    np.testing.assert_allclose(got, ref, rtol=1e-9)


# ----------------------------------------------------------------------------- on a LIBERO scene


@pytest.fixture(scope="module")
def envs():
    pytest.importorskip("libero", reason="needs the LIBERO stack (scripts/setup.sh installs it)")
    from sim.libero.env import LiberoEnv

    faithful = LiberoEnv(0, image_size=32)
    fast = LiberoEnv(0, image_size=32, render_quality="fast")
    yield faithful, fast
    faithful.close()
    fast.close()


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return np.inf if mse == 0 else 10 * np.log10(255**2 / mse)


def test_culled_render_is_bit_identical_to_robosuites(envs):
    env = envs[0]
    env.reset(options={"init_state": 1})
    sim, r = env.raw_env.env.sim, env.renderer
    rng = np.random.default_rng(5)
    culled_some = False
    for _ in range(4):
        env.step(rng.uniform(-1, 1, 7))
        for cam in ("agentview", "robot0_eye_in_hand"):
            ours = sim.render(32, 32, camera_name=cam)
            culled_some |= r.last_ngeom[0] < r.last_ngeom[1]
            r.uninstall()
            try:
                ref = sim.render(32, 32, camera_name=cam)
            finally:
                r.install()
            np.testing.assert_array_equal(ours, ref)
    assert culled_some  # the wrist camera never sees the whole scene


def test_fast_quality_changes_pixels_not_physics(envs):
    faithful, fast = envs
    m0, m1 = faithful.raw_env.env.sim.model._model, fast.raw_env.env.sim.model._model
    np.testing.assert_array_equal(m0.mesh_vert, m1.mesh_vert)  # the model's meshes are untouched
    np.testing.assert_array_equal(m0.mesh_face, m1.mesh_face)
    acts = np.random.default_rng(6).uniform(-1, 1, (6, 7))
    out = []
    for env in envs:
        obs, _ = env.reset(options={"init_state": 2})
        for a in acts:
            obs, *_ = env.step(a)
        out.append((obs, env.raw_env.env.sim.data.qpos.copy()))
    (o0, q0), (o1, q1) = out
    np.testing.assert_array_equal(q0, q1)
    np.testing.assert_array_equal(o0["state"], o1["state"])
    for key in ("image", "wrist_image"):
        assert not np.array_equal(o0[key], o1[key])
        assert _psnr(o0[key], o1[key]) > 20
    orig, drawn = fast.renderer.faces()
    assert drawn < orig / 2
    info = fast.render_info
    assert info["quality"] == "fast" and info["cell_m"] > 0 and info["faces"] == [orig, drawn]
    assert faithful.render_info["quality"] == "faithful" and "cell_m" not in faithful.render_info


def test_fast_renderer_uninstall_restores_faithful_pixels(envs):
    faithful, fast = envs
    for env in envs:
        env.reset(options={"init_state": 3})
    sims = [env.raw_env.env.sim for env in envs]
    ref = sims[0].render(32, 32, camera_name="agentview")
    fast.renderer.uninstall()
    try:
        np.testing.assert_array_equal(sims[1].render(32, 32, camera_name="agentview"), ref)
    finally:
        fast.renderer.install()
    fast_img = sims[1].render(32, 32, camera_name="agentview")
    assert not np.array_equal(fast_img, ref)


def test_fastest_drops_multisampling_and_uninstall_restores_it(envs):
    from sim.libero.render import SceneRenderer

    fast = envs[1]
    fast.reset(options={"init_state": 3})
    sim, ctx = fast.raw_env.env.sim, fast.renderer.ctx
    q = sim.model._model.vis.quality
    samples = int(q.offsamples)
    fast_img = sim.render(32, 32, camera_name="agentview")
    fast.renderer.uninstall()
    fastest = SceneRenderer(ctx, "fastest")
    try:
        assert q.offsamples == 0 and fast.render_info["msaa_samples"] == 0
        img = sim.render(32, 32, camera_name="agentview")
        assert not np.array_equal(img, fast_img) and _psnr(img, fast_img) > 18
    finally:
        fastest.uninstall()
        fast.renderer.install()
    assert q.offsamples == samples > 0
    np.testing.assert_array_equal(sim.render(32, 32, camera_name="agentview"), fast_img)


def test_gl_work_runs_on_the_gl_thread_and_the_context_stays_free(envs, monkeypatch):
    """mjr_render and mjr_readPixels run on the process's GL thread (its own malloc arena: Mesa's
    per-frame allocations stay out of the main heap), and between frames no thread holds the context,
    so the caller's thread can take it (LiberoEnv.close, robosuite after uninstall)."""
    import threading

    import sim.libero.render as render

    env = envs[0]
    r = env.renderer
    assert r.gl_thread  # EGL on Mesa llvmpipe (this machine): on by default
    seen = []
    mjr_render, read_pixels = render.mujoco.mjr_render, render.mujoco.mjr_readPixels

    def traced_render(*a, **kw):
        seen.append(("render", threading.current_thread().name))
        return mjr_render(*a, **kw)

    def traced_read(*a, **kw):
        seen.append(("read", threading.current_thread().name))
        return read_pixels(*a, **kw)

    monkeypatch.setattr(render.mujoco, "mjr_render", traced_render)
    monkeypatch.setattr(render.mujoco, "mjr_readPixels", traced_read)
    obs, _ = env.reset(options={"init_state": 0})
    env.step(np.zeros(7))
    assert {k for k, _ in seen} == {"render", "read"}
    assert all(name.startswith("aura-gl") for _, name in seen), seen
    monkeypatch.undo()
    from OpenGL import EGL

    assert not EGL.eglGetCurrentContext()  # nothing current on this thread while installed
    r.ctx.gl_ctx.make_current()  # and the GL thread does not hold it either (else EGL_BAD_ACCESS)
    render.release_current_egl()
    img = env.raw_env.env.sim.render(32, 32, camera_name="agentview")
    assert img.shape == (32, 32, 3) and img.any()
