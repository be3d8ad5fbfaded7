"""Privileged reads of a LIBERO scene: body poses, collision boxes, sites, joints, goal predicates.

Everything here reads MuJoCo state through robosuite's ``sim`` (never images). ``raw_env`` is
LIBERO's ``OffScreenRenderEnv``; its ``.env`` is the BDDL problem env holding objects, fixtures and
region sites.
"""

from __future__ import annotations

import numpy as np


class Scene:
    """Cached geometry lookups for one env instance (ids are stable until the env is rebuilt)."""

    def __init__(self, raw_env):
        self.raw = raw_env
        self.inner = raw_env.env
        self.model = self.inner.sim.model._model
        self.data = self.inner.sim.data._data
        self._geoms: dict[str, np.ndarray] = {}
        self.table_z = self._table_height()

    # ---- bodies -------------------------------------------------------------------------------
    def _root_body(self, name: str) -> int:
        obj = self.inner.objects_dict.get(name) or self.inner.fixtures_dict.get(name)
        if obj is None:
            raise ValueError(f"unknown object {name!r} in this scene")
        return self.model.body(obj.root_body).id

    def pos(self, name: str) -> np.ndarray:
        """World position of an object's root body (what LIBERO's predicates test)."""
        return self.data.xpos[self._root_body(name)].copy()

    def rot(self, name: str) -> np.ndarray:
        return self.data.xmat[self._root_body(name)].reshape(3, 3).copy()

    def yaw(self, name: str) -> float:
        r = self.rot(name)
        return float(np.arctan2(r[1, 0], r[0, 0]))

    def geom_ids(self, name: str) -> np.ndarray:
        """Collision geoms in the subtree of object ``name``."""
        if name not in self._geoms:
            root = self._root_body(name)
            m = self.model
            ids = []
            for g in range(m.ngeom):
                if not m.geom_contype[g] and not m.geom_conaffinity[g]:
                    continue
                b = int(m.geom_bodyid[g])
                while b not in (0, root):
                    b = int(m.body_parentid[b])
                if b == root:
                    ids.append(g)
            self._geoms[name] = np.asarray(ids, dtype=int)
        return self._geoms[name]

    def geom_boxes(self, name: str, frame: str = "world") -> np.ndarray:
        """Per-geom axis-aligned boxes [n, 2, 3] (lo, hi) in world or the object's body frame."""
        m, d = self.model, self.data
        ids = self.geom_ids(name)
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        r0, p0 = self.rot(name), self.pos(name)
        out = np.empty((len(ids), 2, 3))
        for i, g in enumerate(ids):
            corners = signs * m.geom_aabb[g, 3:] + m.geom_aabb[g, :3]
            w = corners @ d.geom_xmat[g].reshape(3, 3).T + d.geom_xpos[g]
            if frame == "body":
                w = (w - p0) @ r0
            out[i, 0], out[i, 1] = w.min(0), w.max(0)
        return out

    def aabb(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        boxes = self.geom_boxes(name)
        if len(boxes) == 0:
            p = self.pos(name)
            return p.copy(), p.copy()
        return boxes[:, 0].min(0), boxes[:, 1].max(0)

    def obstacles(self, exclude: tuple[str, ...] = (), fixtures: bool = True):
        """[(name, lo, hi)] world boxes of every object (and fixture) not in ``exclude``."""
        names = list(self.inner.objects_dict) + (list(self.inner.fixtures_dict) if fixtures else [])
        return [(n, *self.aabb(n)) for n in names if n not in exclude]

    # ---- sites, joints, predicates -----------------------------------------------------------
    def site_pos(self, site: str) -> np.ndarray:
        return self.inner.sim.data.get_site_xpos(site).copy()

    def site_half(self, site: str) -> np.ndarray:
        """Half-extent of a region site as LIBERO's ``in_box`` uses it: |R size|."""
        obj = self.inner.object_sites_dict[site]
        mat = self.inner.sim.data.get_site_xmat(site)
        return np.abs(mat @ np.asarray(obj.size, dtype=float))

    def joint(self, name: str) -> float:
        m = self.model
        return float(self.data.qpos[m.jnt_qposadr[m.joint(name).id]])

    def holds(self, predicate) -> bool:
        """Evaluate one goal predicate (e.g. ``['in', obj, region]``) with LIBERO's own code."""
        return bool(self.inner._eval_predicate(list(predicate)))

    @property
    def goal(self) -> list[list[str]]:
        return [list(p) for p in self.inner.parsed_problem["goal_state"]]

    def _table_height(self) -> float:
        """Table-top height: the ``table_top`` site where the scene has one, else the median bottom of
        the movable objects (most rest on the table; some start on a shelf or fall off it)."""
        m = self.model
        if any(m.site(i).name == "table_top" for i in range(m.nsite)):
            return float(self.site_pos("table_top")[2])
        return float(np.median([lo[2] for _, lo, _ in self.obstacles(fixtures=False)]))
