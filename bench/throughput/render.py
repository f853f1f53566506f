"""The throughput report as markdown: one table of samples/s, one of what each change did, the scikit-learn RBM table."""

from __future__ import annotations

from typing import Any

from bench.common import fmt_num, fmt_rate, fmt_ratio, ratio
from genlib.tables import format_table


def _markdown(header: list[str], rows: list[list[Any]]) -> str:
    """Rows given as lists beside their header, through the project's one table renderer."""
    return format_table([dict(zip(header, row)) for row in rows], columns=header, style="markdown")


def _cell(v: dict[str, Any] | None) -> str:
    if v is None:
        return "-"
    if v.get("skipped"):
        return "n/a"
    if v.get("error"):
        return "failed"
    rate = v["median_samples_per_s"]
    if v["side"] == "naive":
        return fmt_rate(rate)
    return f"{fmt_rate(rate)} ({fmt_ratio(v['ratio_vs_naive'])})"


def _step(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    if not a or not b:
        return "-"
    return fmt_ratio(ratio(b.get("median_samples_per_s"), a.get("median_samples_per_s")))


def render_markdown(report: dict[str, Any]) -> str:
    """The whole report (as ``main`` builds it) as markdown."""
    env, cfg = report["environment"], report["settings"]
    lines = [
        "# genlib training throughput",
        "",
        f"Device: **{env['device']}** ({env['device_name']}), torch {env['torch']} with "
        f"{env['torch_num_threads']} threads, {env['usable_cpus']} usable CPUs; torchvision {env['torchvision']}, "
        f"scikit-learn {env['sklearn']}. Data: {cfg['data_source']}, {cfg['train_images']} training images. "
        f"Profile `{cfg['profile']}`; medians over {cfg['repeats']} interleaved repeats of about "
        f"{cfg['target_seconds']} s each (less where the time budget required)."
        + ("".join(f" Model `{k}={v}` (--set)." for k, v in (cfg.get("model_overrides") or {}).items())),
        "",
    ]
    load = env.get("load_average")
    if load and load[0] > (env.get("usable_cpus") or 1):
        lines += [
            f"**The machine was busy** (load average {load[0]:.1f} on {env['usable_cpus']} CPUs; threads: "
            f"{cfg['threads_reason']}): timings are noisy; compare the ratios, and rerun on a quiet machine.",
            "",
        ]
    fams = report.get("families", [])
    if fams:
        keys: list[str] = []
        for fam in fams:
            for k in fam["variants"]:
                if k not in keys:
                    keys.append(k)
        labels = {k: next(f["variants"][k]["label"] for f in fams if k in f["variants"]) for k in keys}
        header = ["family"] + [labels[k] for k in keys] + ["best genlib vs naive"]
        rows = []
        for fam in fams:
            best = fam["best"]
            best_txt = (
                f"{fmt_ratio(best['ratio_vs_naive'])} ({fam['variants'][best['variant']]['label']})" if best["variant"] else "-"
            )
            rows.append([fam["family"]] + [_cell(fam["variants"].get(k)) for k in keys] + [best_txt])
        lines += [
            "## Training samples per second (ratio to the naive loop at batch "
            f"{cfg['batch_size']} in brackets)",
            "",
            _markdown(header, rows),
            "",
        ]
        # What each change did: each genlib variant against the one before it.
        steps_header = ["family"]
        pairs = list(zip(keys[:-1], keys[1:]))
        for a, b in pairs:
            steps_header.append(f"{labels[b]} / {labels[a]}")
        step_rows = [[fam["family"]] + [_step(fam["variants"].get(a), fam["variants"].get(b)) for a, b in pairs] for fam in fams]
        lines += ["## What each change did (speed-up of each column over the one before)", "", _markdown(steps_header, step_rows), ""]
        limit_rows = [
            {"family": fam["family"], "variant": v["label"], "MFLOP/image": round(lim["mflop_per_image"], 2),
             "achieved GFLOP/s": round(lim["achieved_gflops"], 1), "torch.mm GFLOP/s, same shapes": round(lim["mm_gflops"], 1),
             "fraction": f"{lim['fraction']:.0%}"}
            for fam in fams for v in fam["variants"].values()
            if (lim := v.get("limit") or {}).get("applies") and lim.get("fraction") is not None
        ]
        if limit_rows:
            lines += [
                "## Against the machine's matrix-multiply rate (MLP families)",
                "",
                "FLOPs are those of the matrix products one training step runs (forward, backward, the RBM's CD "
                "products), recorded by a dispatch mode; the torch.mm rate replays exactly those products (same "
                "shapes, strides, dtype) back to back in the same run. The fraction is achieved over that rate.",
                "",
                format_table(limit_rows, style="markdown"),
                "",
            ]
        lines += ["Variants:", ""]
        for k in keys:
            v = next(f["variants"][k] for f in fams if k in f["variants"])
            lines.append(f"- **{v['label']}**: {v['change']}")
        notes = sorted({f"{fam['family']} {v['label']}: {n}" for fam in fams for v in fam["variants"].values() for n in v["notes"]})
        problems = [
            f"{fam['family']} {v['label']}: {v['error'] or v['skipped']}"
            for fam in fams
            for v in fam["variants"].values()
            if v["error"] or v["skipped"]
        ]
        if problems:
            lines += ["", "Not measured:", ""] + [f"- {p}" for p in problems]
        if notes and cfg.get("verbose_notes"):
            lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
        lines.append("")
    rbm = report.get("rbm_vs_sklearn")
    if rbm:
        s = rbm["settings"]
        lines += [
            "## genlib rbm vs scikit-learn BernoulliRBM",
            "",
            f"{s['train_images']} binarised training images, {s['hidden_units']} hidden units, PCD-1, learning rate "
            f"{s['learning_rate']}, batch {s['batch_size']}, {s['epochs']} epochs, momentum 0; dtype: {s['dtype']}; medians over "
            f"{s['repeats']} interleaved fits. Pseudo-log-likelihood (PL) per image on {s['test_images']} test images "
            f"(stochastic one-bit-flip estimate) and on the first {s['exact_pl_images']} (exact, all 784 bits).",
            "",
        ]
        header = [
            "model",
            "s/epoch",
            "speed-up vs sklearn (float32)",
            "speed-up vs sklearn (float64)",
            "PL, own estimator",
            "PL, genlib estimator (same bits)",
            f"PL exact ({s['exact_pl_images']} images, last fit)",
        ]
        rows = []
        for key, r in rbm["results"].items():
            rows.append(
                [
                    f"{r['side']} ({r['device']})",
                    fmt_num(r["median_seconds_per_epoch"]),
                    fmt_ratio(r["speedup_vs_sklearn"]),
                    fmt_ratio(r["speedup_vs_sklearn_float64"]),
                    fmt_num(r["median_pl_stochastic_own_estimator"], 2),
                    fmt_num(r["median_pl_stochastic_genlib_estimator"], 2),
                    fmt_num(r["pl_exact_last_repeat"], 2),
                ]
            )
        lines += [_markdown(header, rows), "", "Differences that remain:", ""]
        lines += [f"- {d}" for d in rbm["differences"]]
        lines.append("")
    lines.append(f"Total wall time {report['wall_seconds']:.1f} s.")
    return "\n".join(lines) + "\n"

