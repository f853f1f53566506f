"""One peer comparison end to end: interleaved fits, speed-ups of the named pairs, quality by genlib's estimators."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from bench.common import median
from bench.peers.common import Fit, Side, interleave, speed_table, speedup, spread

# Goals from issue 14: genlib at least this many times faster than the peer, at equal or better quality.
GOALS = {"pythae": 1.5, "sklearn_pcd1": 1.5, "learnergy_cd1": 2.0}
# Quality counts as equal when genlib's is at most this many nats per image worse (estimator noise).
QUALITY_TOLERANCE = 0.5


def compare(
    sides: Sequence[Side],
    pairs: Sequence[tuple[str, str]],
    *,
    epochs: int,
    repeats: int,
    cheap_score: Callable[[Any], dict[str, float]],
    full_score: Callable[[Any], dict[str, float]],
    quality_key: str,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Fit every side ``repeats`` times (interleaved), score each fit with ``cheap_score`` and the last
    repeat's models with ``full_score``; ``quality_key`` (higher is better) decides the quality verdict."""
    fits, floors = interleave(sides, repeats, log)
    speed = speed_table(fits, sides, epochs)
    for side in sides:
        cheap = [cheap_score(f.genlib_model) for f in fits[side.key]]
        speed[side.key]["quality_per_repeat"] = cheap
        speed[side.key]["quality"] = {k: spread([c[k] for c in cheap]) for k in cheap[0] if isinstance(cheap[0][k], float)}
        speed[side.key]["quality_last_repeat"] = full_score(fits[side.key][-1].genlib_model)
        log(f"  {side.label}: {speed[side.key]['s_per_epoch']['median']:.2f} s/epoch, {speed[side.key]['quality_last_repeat']}")
    ratios = []
    for genlib_key, peer_key in pairs:
        r = speedup(fits, genlib_key, peer_key, epochs, floors)
        # The verdict compares medians over every repeat where the per-repeat score has the key (one repeat's
        # score moves by a nat or more between repeats of the same code), else the last repeat's full score.
        if quality_key in speed[genlib_key]["quality"]:
            g, p = (speed[k]["quality"][quality_key]["median"] for k in (genlib_key, peer_key))
            basis = f"median of {repeats} repeats"
        else:
            g, p = (speed[k]["quality_last_repeat"].get(quality_key) for k in (genlib_key, peer_key))
            basis = "last repeat"
        goal = GOALS.get(peer_key)
        r.update(
            goal=goal,
            quality_key=quality_key,
            quality_basis=basis,
            quality_genlib=g,
            quality_peer=p,
            quality_ok=None if g is None or p is None else g >= p - QUALITY_TOLERANCE,
            speed_ok=None if goal is None or r["median"] is None else r["median"] >= goal,
        )
        ratios.append(r)
    return {"sides": speed, "speedups": ratios, "epochs": epochs, "repeats": repeats,
            "median_fit_seconds": median([f.seconds for v in fits.values() for f in v])}
