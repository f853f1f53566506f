"""The peers report as markdown: one table of times and quality per comparison, one of the speed-ups."""

from __future__ import annotations

from typing import Any

from genlib.tables import format_table


def _range(s: dict[str, Any], digits: int = 2, unit: str = "") -> str:
    if s.get("median") is None:
        return "-"
    return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def _num(v: Any, digits: int = 2) -> Any:
    return "-" if v is None else round(float(v), digits)


def _sides_table(result: dict[str, Any], quality: list[tuple[str, str]]) -> str:
    rows = []
    for side in result["sides"].values():
        row = {"library": side["label"], "s/epoch, median (range)": _range(side["s_per_epoch"]),
               "steady epoch s": _range(side["steady_epoch_s"])}
        last = side["quality_last_repeat"]
        for key, title in quality:
            row[title] = _num(last.get(key))
        rows.append(row)
    return format_table(rows, style="markdown")


def _verdict(r: dict[str, Any]) -> str:
    if r["speed_ok"] is None:
        return "no goal"
    speed = "met" if r["speed_ok"] else f"missed (goal {r['goal']:g}x)"
    quality = "equal or better" if r["quality_ok"] else "worse"
    return f"speed {speed}; quality {quality}"


def render_markdown(report: dict[str, Any]) -> str:
    env, s = report["environment"], report["settings"]
    lines = [
        f"Measured {env['timestamp']} on {env['cpu_model']} ({env['usable_cpus']} usable CPUs, load average "
        f"{', '.join(f'{x:.1f}' for x in env.get('load_average', ()))} at the start: other processes were "
        f"running), one thread per library (torch and BLAS), torch {env['torch']}, {report['versions']}. "
        f"{s['train_images']} training and {s['test_images']} test images ({s['data']}), every library fed "
        f"the same binarised arrays; {s['repeats']} interleaved repeats of {s['epochs']} epochs; times are "
        "whole fits (model built beforehand) divided by the epochs, medians with min-max over the repeats; "
        "\"steady epoch s\" is the per-epoch time inside the fits where the library reports it.",
        "",
    ]
    vae = report.get("vae")
    if vae:
        lines += ["### VAE 784-200-200-50 (tanh, Bernoulli decoder), batch 100, Adam lr 1e-3", "",
                  _sides_table(vae, [("elbo", "test ELBO"), ("iwae_nll", f"IWAE NLL (k={s['iwae_k']}, "
                                                                           f"{s['iwae_images']} images)")]), ""]
    rbm = report.get("rbm")
    if rbm:
        lines += [f"### RBM 784-{s['rbm_hidden']}, batch 100, SGD lr {s['rbm_lr']}, no momentum or weight decay", "",
                  _sides_table(rbm, [("pl_exact", f"exact PL ({s['pl_exact_images']} images)"),
                                     ("pl_stochastic", "one-bit PL (all test images)")]), ""]
    parts = {"VAE": vae, "RBM": rbm}
    ratios = [r for part in parts.values() if part for r in part["speedups"]]
    if ratios:
        sides = {**(vae or {}).get("sides", {}), **(rbm or {}).get("sides", {})}
        rows = [{"genlib": sides[r["genlib"]]["label"], "vs": sides[r["peer"]]["label"], "speed-up, median (range of paired repeats)":
                 _range(r, unit="x"), "goal": f">= {r['goal']:g}x" if r["goal"] else "-",
                 "ceiling (genlib's products alone)": _range(r["ceiling"], unit="x") if r.get("ceiling") else "-",
                 "products' share of genlib's epoch": _range(r["products_share"]) if r.get("products_share") else "-",
                 f"quality genlib / peer": f"{_num(r['quality_genlib'])} / {_num(r['quality_peer'])} ({r['quality_key']}, {r.get('quality_basis', 'last repeat')})",
                 "verdict": _verdict(r)} for r in ratios]
        lines += ["### Speed-ups", "", format_table(rows, style="markdown"), "",
                  "The ceiling is the peer's epoch over the time genlib's step would take if it did nothing but its "
                  "matrix products, replayed with torch alone at the same shapes after each repeat's fits (the "
                  "same kernels under the same load): no implementation of genlib's algorithm on these kernels, "
                  "at this precision, gets past it. The share is the part of genlib's own epoch those products take.",
                  ""]
    for title, part in parts.items():
        if part:
            lines += [f"Settings that could not be matched ({title}):", ""]
            lines += [f"- {d}" for d in part["unmatched"]] + [""]
    cpu = f" ({report['cpu_seconds']:.0f} s of CPU time)" if "cpu_seconds" in report else ""
    lines.append(f"Total wall time {report['wall_seconds']:.0f} s{cpu}.")
    return "\n".join(lines) + "\n"
