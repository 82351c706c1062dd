"""Progress bars for long Monte Carlo work: tqdm (``tqdm.auto``, so notebooks get a widget).

``enabled=None`` shows the bar only when stderr is a terminal (tqdm's ``disable=None``), so logs and
pipes stay clean; ``True`` forces it and ``False`` silences it.
"""

from __future__ import annotations

from tqdm.auto import tqdm


def Progress(total: int, label: str = "", enabled: bool | None = None, stream=None) -> tqdm:
    """A tqdm bar over ``total`` units of work (a context manager with ``update(k)``)."""
    disable = None if enabled is None else not enabled
    return tqdm(total=max(int(total), 1), desc=label or None, disable=disable, file=stream, leave=False,
                dynamic_ncols=True)
