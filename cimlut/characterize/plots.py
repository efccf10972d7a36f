"""`tables plot`: one PNG family per quantity, read from a table file.

x is the inner axis (or the first parameter axis), one curve per value of the next axis,
at the typical corner and the temperature nearest 27 C; other axes at their middle. A
quantity stored for log interpolation is drawn on a log (symlog) y axis.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..tablefile import open_h5
import numpy as np


_SI = {"V", "A", "s", "C", "J", "F", "S", "W"}


def plot_tables(path: Path, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with open_h5(path) as f:
        cell = f.attrs.get("cell", Path(path).stem)
        for tname, g in f.items():
            params = json.loads(g.attrs["param_axes"])
            inner = g.attrs["inner_axis"] or None
            axes = ["corner", "temperature", *params] + ([inner] if inner else [])
            vals = {a: g[a][()] for a in axes}
            corners = [c.decode() if isinstance(c, bytes) else c for c in vals["corner"]]
            ci = corners.index("tt") if "tt" in corners else 0
            ti = int(np.argmin(np.abs(vals["temperature"] - 27.0)))
            free = params + ([inner] if inner else [])
            x = inner if inner else free[0]
            fam = next((a for a in free if a != x), None)
            for q, _, _ in json.loads(g.attrs["quantities"]):
                ds = g[q]
                data = ds[()]
                idx: list = [ci, ti]
                for a in axes[2: data.ndim]:
                    idx.append(slice(None) if a in (x, fam) else len(vals[a]) // 2)
                sub = data[tuple(idx)]
                kept = [a for a in axes[2: data.ndim] if a in (x, fam)]
                if fam is not None and kept[0] == fam:
                    curves = [(v, sub[k]) for k, v in enumerate(vals[fam])]
                elif fam is not None:
                    curves = [(v, sub[:, k]) for k, v in enumerate(vals[fam])]
                else:
                    curves = [(None, sub)]
                if len(curves) > 9:  # a readable legend: every k-th member, ends included
                    keep = np.unique(np.linspace(0, len(curves) - 1, 9).round().astype(int))
                    curves = [curves[k] for k in keep]
                fig, ax = plt.subplots(figsize=(6.4, 4.4))
                cmap = plt.get_cmap("viridis", max(len(curves), 2))
                unit = g[fam].attrs["units"] if fam else ""
                for k, (v, y) in enumerate(curves):
                    if v is None:
                        label = None
                    elif unit in _SI:
                        label = EngFormatter(unit=unit)(v)
                    else:
                        label = f"{v:.4g} {unit}"
                    ax.plot(vals[x], y, color=cmap(k), lw=1.3, label=label)
                if g[x].attrs.get("interp") == "log":
                    ax.set_xscale("log")
                if ds.attrs.get("interp") in ("log", "asinh"):
                    finite = np.abs(sub[np.isfinite(sub)])
                    top = float(finite.max()) if finite.size else 1.0
                    ax.set_yscale("symlog", linthresh=max(float(ds.attrs.get("interp_floor", 0)),
                                                         top * 1e-7))
                ax.set_xlabel(f"{g[x].attrs['long_name']} [{g[x].attrs['units']}]")
                ax.set_ylabel(f"{q} [{ds.attrs['units']}]")
                if fam is not None:
                    ax.legend(title=g[fam].attrs["long_name"], fontsize=7, ncol=2)
                ax.grid(alpha=0.3)
                ax.set_title(f"{cell}.{tname}: {q} ({corners[ci]}, "
                             f"{vals['temperature'][ti]:g} C)", fontsize=9)
                fig.tight_layout()
                p = out / f"{cell}.{tname}.{q}.png"
                fig.savefig(p, dpi=110)
                plt.close(fig)
                written.append(p)
    return written
