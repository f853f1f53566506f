"""Interleaved repeats of every variant of one family, summarised as medians and ratios to the naive loop."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from bench.common import fmt_num, fmt_rate, median, ratio
from bench.throughput.data import BenchData
from bench.throughput.limit import achieved, matmul_rate, step_products, step_profile
from bench.throughput.runner import Runner
from bench.throughput.variants import build_variants, family_config
from genlib.models import get_model


def short_error(err: BaseException) -> str:
    """The first line of an exception, for a report cell."""
    text = f"{type(err).__name__}: {err}".strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def measure_family(
    family: str,
    data: BenchData,
    *,
    device: torch.device,
    profile: str = "quick",
    batch_size: int = 128,
    big_batch: int = 512,
    bigger_batch: int | None = None,
    compile_: bool = False,
    repeats: int = 3,
    target_seconds: float = 0.25,
    seed: int = 0,
    limits: bool = True,
    model_overrides: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Training samples/s of every variant of ``family`` (interleaved repeats) and the ratios to the naive loop.

    Returns a JSON-able dict: ``variants`` (per variant: every repeat's samples and seconds,
    ``samples_per_s``, ``median_samples_per_s``, ``ratio_vs_naive`` and, with ``limits``, ``limit``: GFLOP/s
    achieved against the torch.mm rate at the step's shapes, see ``bench.throughput.limit``), ``ratio_equal_batch``
    (genlib vs naive at the same batch size) and ``best`` (genlib's fastest variant). ``model_overrides``:
    model config fields (field -> value) applied where the family's config has them.
    """
    config = family_config(family, profile, data, model_overrides)
    variants = build_variants(device, batch_size, big_batch, compile_, bigger_batch)
    if compile_:
        torch.compiler.reset()  # drop earlier families' graphs so none counts against recompile limits
    runners: list[Runner] = []
    for v in variants:
        try:
            r = Runner(v, family, config, data, device, seed)
        except Exception as err:  # noqa: BLE001 - a variant that cannot be built is reported, not fatal
            log(f"  {family} {v.label}: setup failed: {short_error(err)}")
            continue
        runners.append(r)
        if r.skipped:
            continue
        try:
            r.warm_up(target_seconds)
            r.plan(target_seconds)
        except Exception as err:  # noqa: BLE001 - e.g. a compile failure: report it, keep the other sides
            r.error = short_error(err)
            log(f"  {family} {v.label}: warm-up failed: {r.error}")
    active = [r for r in runners if not r.error and not r.skipped]
    # The matmul rate is measured inside the same repeats, so that it meets the same load as the steps.
    products: dict[int, list[Any]] = {}
    mm_rates: dict[int, list[float]] = {}
    if limits:
        for r in active:
            v = r.variant
            if v.side == "genlib" and not v.compiled and v.batch_size not in products:
                torch.manual_seed(seed)
                model = get_model(family, config).to(device)
                products[v.batch_size], _ = step_products(model, model.configure_optimizers(),
                                                          data.x[: v.batch_size], data.y[: v.batch_size], device)
                mm_rates[v.batch_size] = []
    for rep in range(repeats):
        for bs, prods in products.items():
            if prods:
                mm_rates[bs].append(matmul_rate(prods, device, target_s=target_seconds / 2, trials=1))
        shift = rep % max(len(active), 1)
        for r in active[shift:] + active[:shift]:
            if r.error:
                continue
            torch.manual_seed(seed * 1000 + rep)
            try:
                r.measure()
            except Exception as err:  # noqa: BLE001
                r.error = short_error(err)
                log(f"  {family} {r.variant.label}: failed: {r.error}")

    base = next((r for r in runners if r.variant.side == "naive"), None)
    base_median = median(base.rates) if base and not base.error else None
    out_variants: dict[str, Any] = {}
    for r in runners:
        v = r.variant
        rates = r.rates if not r.error else []
        med = median(rates)
        paired = [a / b for a, b in zip(rates, base.rates)] if base and v.side == "genlib" and base.rates else []
        out_variants[v.key] = {
            "label": v.label,
            "side": v.side,
            "batch_size": v.batch_size,
            "tuned": v.tuned,
            "compiled": v.compiled,
            "change": v.change,
            "notes": r.notes,
            "warmup_s": r.warmup_s,
            "rate_estimate": r.rate_estimate,
            "samples_per_measurement": r.m * r.epochs,
            "samples": r.samples,
            "seconds": r.seconds,
            "samples_per_s": rates,
            "median_samples_per_s": med,
            "ratio_vs_naive": ratio(med, base_median),
            "paired_ratios_vs_naive": paired,
            "error": r.error,
            "skipped": r.skipped,
        }
    if limits:
        profiles: dict[int, dict[str, Any]] = {}
        for r in runners:
            v = r.variant
            if v.side != "genlib" or v.compiled or r.error or r.skipped:
                continue
            if v.batch_size not in profiles:
                torch.manual_seed(seed)
                model = get_model(family, config).to(device)
                profiles[v.batch_size] = step_profile(model, model.configure_optimizers(), data.x[: v.batch_size],
                                                      data.y[: v.batch_size], device, mm_rates.get(v.batch_size))
            out_variants[v.key]["limit"] = achieved(profiles[v.batch_size], out_variants[v.key]["median_samples_per_s"])
    genlib_rows = [(k, v) for k, v in out_variants.items() if v["side"] == "genlib" and v["median_samples_per_s"]]
    best_key, best = max(genlib_rows, key=lambda kv: kv[1]["median_samples_per_s"], default=(None, None))
    equal = out_variants.get(f"genlib_b{batch_size}", {})
    n_params = sum(p.numel() for p in runners[0].model.parameters()) if runners else None
    log(
        f"{family}: naive {fmt_rate(base_median)}/s, genlib b{batch_size} x{fmt_num(equal.get('ratio_vs_naive'), 2)}, "
        f"best {best_key} x{fmt_num(best['ratio_vs_naive'] if best else None, 2)}"
    )
    return {
        "family": family,
        "profile": profile,
        "model_config": config.model_dump(mode="json"),
        "n_params": n_params,
        "variants": out_variants,
        "ratio_equal_batch": equal.get("ratio_vs_naive"),
        "best": {
            "variant": best_key,
            "median_samples_per_s": best["median_samples_per_s"] if best else None,
            "ratio_vs_naive": best["ratio_vs_naive"] if best else None,
        },
    }
