"""Cheaper offscreen rendering for ``LiberoEnv`` on a software rasteriser (Mesa llvmpipe).

Two independent pieces, installed on robosuite's ``MjRenderContext`` by :class:`SceneRenderer`:

* **Frustum culling (exact, every quality).** MuJoCo hands every visible-group geom to OpenGL,
  which transforms and clips all their vertices even when the whole geom lies outside the camera's
  view (the wrist camera sees 15-25 of ~80 geoms). A geom is dropped from the scene before
  ``mjr_render`` when its oriented bounding box ``(c, R, h)`` (``c`` the world centre, ``R`` the
  geom's rotation, ``h`` the half-sizes of ``model.geom_aabb``) lies entirely outside one of the
  six frustum half-spaces ``n . x + d <= 0``:

      n . c + d  >  sum_k h_k |n . R e_k| + margin.

  Such a geom cannot produce a fragment, there are no shadow-casting lights and no reflective
  planes/boxes in libero_10 scenes (checked: those flags change no pixel), so the image is
  bit-identical (tested).

* **Decimated render meshes (``quality="fast"`` or ``"fastest"``, changes pixels).** Rendering is
  bound by the number of small triangles (llvmpipe's 4x-multisample coverage loop is the hottest
  code). Each mesh's display list is recompiled from a vertex-clustered copy: corners are snapped to
  cells of edge ``cell`` (metres, mesh frame = world scale), a cell's vertices merge to their mean
  position ``p_c = (1/|c|) sum_{i in c} p_i``, triangles whose three corners fall in fewer than
  three cells vanish. Normals and texture coordinates stay split across sharp edges and texture
  seams: a vertex is ``(cell, round(2 n), floor(uv / 0.02))`` and carries the mean normal
  (renormalised) and mean uv of its corners. Only the OpenGL display list changes - ``mjModel``,
  collision geometry and physics are untouched.

* **A GL thread of its own (EGL contexts).** The GL calls of an installed renderer (``mjr_render``,
  ``mjr_readPixels``) run on one long-lived thread per process, so Mesa's per-frame allocations land in
  that thread's malloc arena, not in the main thread's heap next to the Python loop's objects; the scene
  update (culling, ``mjv_updateScene``) and the image arrays, which outlive the frame, stay on the
  caller's thread. Why: with
  ``LP_NUM_THREADS=0`` llvmpipe bins and rasterises in the calling thread, ~20 MB of 64 KiB scene blocks
  malloc'd and freed per frame, plus, every ~30 frames, a new 1 MiB constant-upload buffer
  (``posix_memalign(4096, 1 MiB + 48)``, alive ~2 s). In glibc 2.36's main arena the Python objects
  allocated meanwhile settle in the holes those buffers leave, and an aligned 1 MiB request needs 4 KiB
  of slack more than the hole: the heap grew by brk (``sysmalloc`` from that ``posix_memalign``, caught
  with gdb) in ~0.6-1.7 MB steps over a long ``aura run`` on LIBERO (``benchmarks/heap_probe.py``;
  docs/deploy.md, "Soak of `aura run` on LIBERO", also for what remains: the GL thread's own arena still
  steps up now and then). The thread is invisible to callers: each job makes the context current and
  releases it, so code on the caller's thread (``LiberoEnv.close``, robosuite's renderer after
  :meth:`SceneRenderer.uninstall`) still finds it free.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import mujoco
import numpy as np

QUALITIES = ("faithful", "fast", "fastest")


def add_render_argument(parser) -> None:
    """``--render faithful|fast|fastest`` for the commands that build ``LiberoEnv``s."""
    parser.add_argument(
        "--render",
        default="faithful",
        choices=QUALITIES,
        help="faithful: LIBERO's pixels (default); fast: decimated render meshes (~2.4x faster on a CPU, "
        "27-34 dB PSNR vs faithful); fastest: fast without MSAA. Recorded with the results (docs/libero.md)",
    )


FAST_CELL_M = 0.006  # 6 mm: below a 128-px agentview pixel (~7 mm at the table)
UV_BIN = 0.02
CULL_MARGIN_M = 1e-3


# ----------------------------------------------------------------------------- frustum culling


def frustum_planes(pos, forward, up, near, far, top, bottom, center=0.0, halfwidth=None, aspect=1.0):
    """The six half-spaces ``n . x + d <= 0`` (unit ``n``, rows ``[n, d]``) of a perspective camera.

    Camera frame: ``x`` right ``= forward x up``, ``y`` up, ``z`` forward; the image plane at depth
    ``near`` spans ``[center - w, center + w] x [bottom, top]`` with ``w = halfwidth`` or, as in
    ``mjr_render``, ``0.5 * aspect * (top - bottom)``.
    """
    pos, fwd, up = (np.asarray(v, np.float64) for v in (pos, forward, up))
    w = halfwidth if halfwidth else 0.5 * aspect * (top - bottom)
    rows = np.stack([np.cross(fwd, up), up, fwd])  # camera axes in world coordinates
    cam = np.array(
        [
            [near, 0, -(center + w), 0],  # right:  near x <= (center + w) z
            [-near, 0, center - w, 0],  # left:   near x >= (center - w) z
            [0, near, -top, 0],  # top
            [0, -near, bottom, 0],  # bottom
            [0, 0, -1, near],  # near:   z >= near
            [0, 0, 1, -far],  # far:    z <= far
        ],
        np.float64,
    )
    scale = np.linalg.norm(cam[:, :3], axis=1)
    n_world = (cam[:, :3] / scale[:, None]) @ rows
    d = cam[:, 3] / scale - n_world @ pos
    return np.concatenate([n_world, d[:, None]], axis=1)


def glcamera_planes(scn: mujoco.MjvScene, width: int, height: int) -> np.ndarray:
    """:func:`frustum_planes` of the (stereo-averaged) camera that ``mjr_render`` will use."""
    c = mujoco.mjv_averageCamera(scn.camera[0], scn.camera[1])
    if c.orthographic:
        raise ValueError("orthographic cameras are not culled")
    return frustum_planes(
        c.pos, c.forward, c.up, c.frustum_near, c.frustum_far, c.frustum_top, c.frustum_bottom,
        c.frustum_center, c.frustum_width, width / height,
    )  # fmt: skip


def boxes_outside(planes, centers, rots, halves, margin=CULL_MARGIN_M) -> np.ndarray:
    """``[G]`` bool: box ``g`` (centre ``c``, rotation ``R`` [G,3,3], half-sizes ``h``) lies more than
    ``margin`` outside some plane, i.e. ``n . c + d > sum_k h_k |n . R e_k| + margin``."""
    n, d = planes[:, :3], planes[:, 3]
    dist = centers @ n.T + d  # [G, P]
    radius = np.einsum("gk,gpk->gp", halves, np.abs(np.einsum("pi,gik->gpk", n, rots)))
    return np.any(dist > radius + margin, axis=1)


def boxes_outside_naive(planes, centers, rots, halves, margin=CULL_MARGIN_M) -> np.ndarray:
    """Twin of :func:`boxes_outside`: a box is outside a plane iff all 8 of its corners are."""
    out = np.zeros(len(centers), bool)
    signs = [(a, b, c) for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)]
    for g in range(len(centers)):
        corners = [centers[g] + rots[g] @ (np.array(s, np.float64) * halves[g]) for s in signs]
        for p in planes:
            if all(float(p[:3] @ x + p[3]) > margin for x in corners):
                out[g] = True
                break
    return out


def geom_boxes(m: mujoco.MjModel, d: mujoco.MjData):
    """World oriented bounding boxes ``(centres, rotations, half-sizes)`` of all geoms."""
    aabb = np.asarray(m.geom_aabb).reshape(-1, 6)
    rots = np.asarray(d.geom_xmat).reshape(-1, 3, 3)
    centers = np.asarray(d.geom_xpos) + np.einsum("gij,gj->gi", rots, aabb[:, :3])
    return centers, rots, aabb[:, 3:]


# ----------------------------------------------------------------------------- mesh decimation


def mesh_corners(m: mujoco.MjModel, k: int):
    """Per-corner ``(positions [F,3,3], normals [F,3,3], uv [F,3,2] or None)`` of mesh ``k`` exactly as
    ``mjr_uploadMesh`` draws it: without uv, a vertex normal more than ~37 degrees off the face
    normal (cosine < 0.8) is replaced by the face normal (sharp edges stay flat)."""
    fa, fn = m.mesh_faceadr[k], m.mesh_facenum[k]
    verts = m.mesh_vert[m.mesh_vertadr[k] : m.mesh_vertadr[k] + m.mesh_vertnum[k]].astype(np.float64)
    pos = verts[m.mesh_face[fa : fa + fn]]
    nrm_all = m.mesh_normal[m.mesh_normaladr[k] : m.mesh_normaladr[k] + m.mesh_normalnum[k]]
    nrm = nrm_all.astype(np.float64)[m.mesh_facenormal[fa : fa + fn]]
    ta = m.mesh_texcoordadr[k]
    if ta >= 0:
        uv_all = m.mesh_texcoord[ta : ta + m.mesh_texcoordnum[k]].astype(np.float64)
        return pos, nrm, uv_all[m.mesh_facetexcoord[fa : fa + fn]]
    face_n = np.cross(pos[:, 1] - pos[:, 0], pos[:, 2] - pos[:, 0])
    face_n /= np.maximum(np.linalg.norm(face_n, axis=1, keepdims=True), 1e-30)
    sharp = np.einsum("fci,fi->fc", nrm, face_n) < 0.8
    return pos, np.where(sharp[..., None], face_n[:, None, :], nrm), None


def _dense_ids(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids of the distinct rows of an int matrix ``[N, K]`` (lexicographic order): ``(id per row,
    index of each id's first row)``."""
    if len(keys) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    span = keys.max(axis=0) - keys.min(axis=0) + 1
    if np.sum(np.log2(span.astype(np.float64))) < 62:  # mixed-radix code per row: a 1-D unique is much faster
        code = np.zeros(len(keys), np.int64)
        for j in range(keys.shape[1]):
            code = code * span[j] + (keys[:, j] - keys[:, j].min())
        _, first, inv = np.unique(code, return_index=True, return_inverse=True)
    else:
        _, first, inv = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return inv.ravel(), first


@dataclass
class Decimated:
    """An indexed triangle mesh: ``pos [V,3]``, unit ``normal [V,3]``, ``uv [V,2]`` or None, ``tri [T,3]``."""

    pos: np.ndarray
    normal: np.ndarray
    uv: np.ndarray | None
    tri: np.ndarray


def cluster_mesh(pos, nrm, uv, cell: float) -> Decimated:
    """Vertex clustering of per-corner attributes (see the module docstring), vectorised."""
    f = pos.shape[0]
    p, n = pos.reshape(-1, 3), nrm.reshape(-1, 3)
    pcell, _ = _dense_ids(np.floor(p / cell).astype(np.int64))
    ncell = int(pcell.max()) + 1 if pcell.size else 0
    counts = np.bincount(pcell, minlength=ncell).astype(np.float64)
    mean_p = np.stack([np.bincount(pcell, p[:, j], ncell) for j in range(3)], 1) / counts[:, None]
    cols = [pcell[:, None], np.round(2.0 * n).astype(np.int64)]
    if uv is not None:
        cols.append(np.floor(uv.reshape(-1, 2) / UV_BIN).astype(np.int64))
    vid, first = _dense_ids(np.concatenate(cols, axis=1))
    nv = first.size
    vn = np.stack([np.bincount(vid, n[:, j], nv) for j in range(3)], 1)
    vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-30)
    vuv = None
    if uv is not None:
        u = uv.reshape(-1, 2)
        vuv = (
            np.stack([np.bincount(vid, u[:, j], nv) for j in range(2)], 1)
            / np.bincount(vid, minlength=nv)[:, None]
        )
    c = pcell.reshape(f, 3)
    keep = (c[:, 0] != c[:, 1]) & (c[:, 1] != c[:, 2]) & (c[:, 0] != c[:, 2])
    return Decimated(mean_p[pcell[first]], vn, vuv, vid.reshape(f, 3)[keep])


def cluster_mesh_naive(pos, nrm, uv, cell: float) -> Decimated:
    """Twin of :func:`cluster_mesh` with Python dictionaries (vertex order may differ)."""
    cells: dict[tuple, list] = {}
    verts: dict[tuple, list] = {}
    corner_keys = []
    for fi in range(pos.shape[0]):
        keys = []
        for ci in range(3):
            p = pos[fi, ci]
            ck = tuple(int(np.floor(x / cell)) for x in p)
            cells.setdefault(ck, []).append(p)
            vk = (ck,) + tuple(int(np.round(2.0 * x)) for x in nrm[fi, ci])
            if uv is not None:
                vk += tuple(int(np.floor(x / UV_BIN)) for x in uv[fi, ci])
            verts.setdefault(vk, []).append((nrm[fi, ci], None if uv is None else uv[fi, ci]))
            keys.append(vk)
        corner_keys.append(keys)
    index = {vk: i for i, vk in enumerate(verts)}
    vpos = np.array([np.mean(cells[vk[0]], axis=0) for vk in verts]).reshape(-1, 3)
    vn = np.array([np.sum([a for a, _ in verts[vk]], axis=0) for vk in verts]).reshape(-1, 3)
    vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-30)
    vuv = None if uv is None else np.array([np.mean([b for _, b in verts[vk]], axis=0) for vk in verts])
    tri = [[index[k] for k in keys] for keys in corner_keys if len({k[0] for k in keys}) == 3]
    return Decimated(vpos, vn, vuv, np.array(tri, np.int64).reshape(-1, 3))


def decimate_model_meshes(m: mujoco.MjModel, meshes, cell: float) -> dict[int, Decimated]:
    """:func:`cluster_mesh` of each mesh id in ``meshes``."""
    return {int(k): cluster_mesh(*mesh_corners(m, int(k)), cell) for k in meshes}


# ----------------------------------------------------------------------------- the GL thread

_GL_POOL: ThreadPoolExecutor | None = None
_GL_LOCK = threading.Lock()


def _forget_gl_thread() -> None:  # a forked child has no GL thread, whatever the parent had
    global _GL_POOL
    _GL_POOL = None


os.register_at_fork(after_in_child=_forget_gl_thread)


def on_gl_thread(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on the process's GL thread (module docstring), started on first use."""
    global _GL_POOL
    with _GL_LOCK:
        if _GL_POOL is None:
            _GL_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aura-gl")
        pool = _GL_POOL
    if threading.current_thread().name.startswith("aura-gl"):
        return fn(*args, **kwargs)  # already there (a job calling another)
    return pool.submit(fn, *args, **kwargs).result()


def _is_egl(ctx) -> bool:
    return type(ctx.gl_ctx).__module__.endswith("egl_context")


def _software_gl() -> bool:
    """Whether the current GL context renders on the CPU (Mesa llvmpipe / softpipe): the case whose
    per-frame mallocs fragment the caller's heap. A GPU driver (the GPU machine's NVIDIA EGL) keeps its
    frame memory on the device, and the GL thread has not been run there: it stays off."""
    from OpenGL import GL

    try:
        name = GL.glGetString(GL.GL_RENDERER) or b""
    except Exception:  # no current context: nothing to tell, keep robosuite's own threading
        return False
    return any(s in name.lower() for s in (b"llvmpipe", b"softpipe"))


def release_current_egl() -> None:
    """Make no EGL context current on the calling thread (so another thread may take it)."""
    from OpenGL import EGL
    from robosuite.renderers.context.egl_context import EGL_DISPLAY

    EGL.eglMakeCurrent(EGL_DISPLAY, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)


# ----------------------------------------------------------------------------- the render hook


class SceneRenderer:
    """Takes over ``ctx.render`` of one robosuite ``MjRenderContext`` (robosuite's ``sim.render``
    calls it under its render lock): the same camera set-up, ``mjv_updateScene`` and ``mjr_render``,
    with frustum-culled geoms left out of the scene and, for ``quality="fast"`` / ``"fastest"``,
    decimated display lists for the meshes of rendered geoms. :meth:`uninstall` restores robosuite's
    renderer and the original display lists. Segmentation renders go through robosuite's own path,
    unculled. With ``gl_thread`` (default: EGL contexts of a CPU renderer, Mesa llvmpipe) ``render`` and
    ``read_pixels`` run on the process's GL thread (module docstring); uninstalled, the context is current
    on the caller's thread again, as robosuite expects.
    """

    def __init__(
        self,
        ctx,
        quality: str = "faithful",
        cell: float = FAST_CELL_M,
        cull: bool = True,
        gl_thread: bool | None = None,
    ):
        if quality not in QUALITIES:
            raise ValueError(f"render quality must be one of {QUALITIES}, got {quality!r}")
        if not cell > 0:
            raise ValueError(f"cell must be > 0 metres, got {cell!r}")
        self.ctx, self.quality, self.cell, self.cull = ctx, quality, float(cell), bool(cull)
        if gl_thread is None:
            gl_thread = _is_egl(ctx) and _software_gl()
        self.gl_thread = bool(gl_thread)
        if self.gl_thread and not _is_egl(ctx):
            raise ValueError("gl_thread needs an EGL context (MUJOCO_GL=egl)")
        self.model = ctx.model._model
        hidden = [g for g in range(len(ctx.vopt.geomgroup)) if not ctx.vopt.geomgroup[g]]
        # Culled geoms are moved for one mjv_updateScene call into a group the scene skips anyway.
        self._hide_group = hidden[0] if hidden else None
        # Planes may be infinite (size 0) and are drawn as a grid up to the far plane: never culled.
        self._cullable = np.asarray(self.model.geom_type) != mujoco.mjtGeom.mjGEOM_PLANE
        self.decimated: dict[int, Decimated] = {}
        if quality != "faithful":
            self.decimated = decimate_model_meshes(self.model, self.visual_meshes(), self.cell)
        # "fastest" also drops LIBERO's 4x multisampling (model.vis.quality.offsamples), which
        # halves llvmpipe's per-triangle coverage work; the saved value is restored by uninstall.
        self._offsamples = 0 if quality == "fastest" else None
        self._saved_offsamples = None
        self._con = None
        self.last_ngeom = (0, 0)  # (geoms in view, geoms the scene would have had) of the last render
        self.install()

    def install(self) -> None:
        """Route ``ctx.render`` here; the decimated lists are compiled at the next render."""
        q = self.model.vis.quality
        if self._offsamples is not None and q.offsamples != self._offsamples:
            self._saved_offsamples = int(q.offsamples)
            q.offsamples = self._offsamples
            self._new_context()
        self._con = None
        self.ctx.render = self.render
        if self.gl_thread:
            self.ctx.read_pixels = self.read_pixels
            release_current_egl()  # robosuite (or _new_context) made it current here: hand it over
        self.installed = True

    def visual_meshes(self) -> list[int]:
        """Ids of the meshes drawn by geoms of the groups this context renders."""
        m, groups = self.model, self.ctx.vopt.geomgroup
        return sorted(
            {
                int(m.geom_dataid[g])
                for g in range(m.ngeom)
                if m.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH and _rendered(groups, m.geom_group[g])
            }
        )

    def faces(self) -> tuple[int, int]:
        """(original, drawn) triangle counts over :meth:`visual_meshes`."""
        ids = self.visual_meshes()
        orig = int(sum(self.model.mesh_facenum[k] for k in ids))
        return orig, int(
            sum(
                len(self.decimated[k].tri) if k in self.decimated else self.model.mesh_facenum[k] for k in ids
            )
        )

    def _sync_context(self) -> None:
        """(Re)compile the decimated display lists into a new ``MjrContext`` (made at start-up and
        whenever robosuite or ``LiberoEnv`` re-creates it)."""
        con = self.ctx.con
        if con is self._con:
            return
        self._con = con
        if self.decimated:
            self.ctx.gl_ctx.make_current()
            _compile_lists(con, self.decimated)

    def render(self, width, height, camera_id=None, segmentation=False):
        ctx = self.ctx
        if segmentation or not self.cull or self._hide_group is None:
            return self._gl(self._robosuite_render, width, height, camera_id, segmentation)
        # The scene (camera, culling, mjv_updateScene: MuJoCo, no GL) on the caller's thread, so that the
        # GL thread allocates nothing but GL's own memory; only the draw goes there.
        if camera_id is not None:
            ctx.cam.type = (
                mujoco.mjtCamera.mjCAMERA_FREE if camera_id == -1 else mujoco.mjtCamera.mjCAMERA_FIXED
            )
            ctx.cam.fixedcamid = camera_id
        m, d = self.model, ctx.data._data
        mujoco.mjv_updateCamera(m, d, ctx.cam, ctx.scn)
        outside = boxes_outside(glcamera_planes(ctx.scn, width, height), *geom_boxes(m, d))
        hide = np.flatnonzero(outside & self._cullable)
        saved = m.geom_group[hide].copy()
        m.geom_group[hide] = self._hide_group
        try:
            mujoco.mjv_updateScene(m, d, ctx.vopt, ctx.pert, ctx.cam, mujoco.mjtCatBit.mjCAT_ALL, ctx.scn)
        finally:
            m.geom_group[hide] = saved
        culled = sum(_rendered(ctx.vopt.geomgroup, g) for g in saved)
        self.last_ngeom = (ctx.scn.ngeom, ctx.scn.ngeom + culled)
        self._gl(self._draw, width, height)

    def read_pixels(self, width, height, depth=False, segmentation=False):
        """robosuite's ``read_pixels`` (called right after ``render``): the images are allocated on the
        caller's thread (they outlive the frame: in the GL thread's arena they would sit between Mesa's
        per-frame blocks), only ``mjr_readPixels`` runs on the GL thread."""
        if segmentation:
            return self._gl(type(self.ctx).read_pixels, self.ctx, width, height, depth, segmentation)
        rgb = np.empty((height, width, 3), dtype=np.uint8)
        dep = np.empty((height, width), dtype=np.float32) if depth else None
        self._gl(self._read, rgb, dep, width, height)
        return (rgb, dep) if depth else rgb

    def _gl(self, fn, *args):
        """``fn(*args)`` with the context current: on the GL thread (released after), or right here."""
        if self.gl_thread:
            return on_gl_thread(self._on_gl_thread, fn, *args)
        self.ctx.gl_ctx.make_current()
        return fn(*args)

    def _on_gl_thread(self, fn, *args):
        self.ctx.gl_ctx.make_current()
        try:
            return fn(*args)
        finally:
            release_current_egl()

    def _prepare(self, width, height) -> None:
        """GL side of a render: buffer size, the decimated lists (the context is current)."""
        ctx = self.ctx
        if width > ctx.con.offWidth or height > ctx.con.offHeight:
            ctx.update_offscreen_size(
                max(width, ctx.model.vis.global_.offwidth), max(height, ctx.model.vis.global_.offheight)
            )
        self._sync_context()

    def _draw(self, width, height) -> None:
        self._prepare(width, height)
        mujoco.mjr_render(mujoco.MjrRect(0, 0, width, height), self.ctx.scn, self.ctx.con)

    def _robosuite_render(self, width, height, camera_id, segmentation):
        self._prepare(width, height)
        ctx = self.ctx
        return type(ctx).render(ctx, width, height, camera_id=camera_id, segmentation=segmentation)

    def _read(self, rgb, depth, width, height) -> None:
        mujoco.mjr_readPixels(
            rgb=rgb, depth=depth, viewport=mujoco.MjrRect(0, 0, width, height), con=self.ctx.con
        )

    def uninstall(self) -> None:
        """Back to robosuite's renderer and MuJoCo's own display lists."""
        ctx = self.ctx
        ctx.__dict__.pop("render", None)
        ctx.__dict__.pop("read_pixels", None)
        self.installed = False
        if self.gl_thread:  # robosuite renders on the caller's thread without selecting the context
            ctx.gl_ctx.make_current()
        if self._saved_offsamples is not None:  # a new MjrContext also rebuilds MuJoCo's own lists
            self.model.vis.quality.offsamples = self._saved_offsamples
            self._saved_offsamples = None
            self._new_context()
        elif self.decimated and ctx.con is self._con:
            ctx.gl_ctx.make_current()
            for k in self.decimated:
                mujoco.mjr_uploadMesh(self.model, ctx.con, k)
        self._con = None

    def _new_context(self) -> None:
        """Re-create the ``MjrContext`` (buffers follow ``model.vis``), as robosuite does on resize."""
        self.ctx.gl_ctx.make_current()
        self.ctx.con.free()
        self.ctx._set_mujoco_context_and_buffers()


def _rendered(geomgroup, group) -> bool:
    """Whether geoms of ``group`` enter the scene (MuJoCo draws groups 0-5 whose flag is set)."""
    return 0 <= group < len(geomgroup) and bool(geomgroup[group])


def _compile_lists(con, meshes: dict[int, Decimated]) -> None:
    """Replace display list ``baseMesh + 2 k`` (MuJoCo's list for mesh ``k``; ``2 k + 1`` is its
    convex hull) by an indexed draw of the decimated mesh. Client arrays are read at compile time."""
    from OpenGL import GL  # after ensure_libero() has chosen PYOPENGL_PLATFORM

    GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)
    GL.glBindBuffer(GL.GL_ELEMENT_ARRAY_BUFFER, 0)
    GL.glClientActiveTexture(GL.GL_TEXTURE0)
    for k, mesh in meshes.items():
        lst = con.baseMesh + 2 * k
        GL.glDeleteLists(lst, 1)
        GL.glNewList(lst, GL.GL_COMPILE)
        GL.glEnableClientState(GL.GL_VERTEX_ARRAY)
        GL.glVertexPointer(3, GL.GL_FLOAT, 0, np.ascontiguousarray(mesh.pos, np.float32))
        GL.glEnableClientState(GL.GL_NORMAL_ARRAY)
        GL.glNormalPointer(GL.GL_FLOAT, 0, np.ascontiguousarray(mesh.normal, np.float32))
        if mesh.uv is not None:
            GL.glEnableClientState(GL.GL_TEXTURE_COORD_ARRAY)
            GL.glTexCoordPointer(2, GL.GL_FLOAT, 0, np.ascontiguousarray(mesh.uv, np.float32))
        if len(mesh.tri):
            GL.glDrawElements(
                GL.GL_TRIANGLES, mesh.tri.size, GL.GL_UNSIGNED_INT, np.ascontiguousarray(mesh.tri, np.uint32)
            )
        GL.glEndList()
        for arr in (GL.GL_VERTEX_ARRAY, GL.GL_NORMAL_ARRAY, GL.GL_TEXTURE_COORD_ARRAY):
            GL.glDisableClientState(arr)
