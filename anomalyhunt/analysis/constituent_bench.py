"""The constituent-level methods side by side (``bench search --constituents``): per method and injection the
truth metrics over seeds, and the talks' claims as measured by the run.

Claims (each only when its methods ran): Tag N' Train's AUC gain over its starting autoencoder with signal, minus
the same gain without signal (per seed), is more than 3 standard errors above zero (so the gain is the signal's,
not TNT learning the QCD correlation of the two jets); DarkCLR's 1/eps_B at eps_S = 0.2 is >= 1.3 x the
autoencoder's; AnomalyCLR's AUC is above the autoencoder's; the constituent-level DRAPES template is within 0.05 of
0.5 in template AUC while the sideband negative control exceeds 0.55 (the check has power).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .metrics import spread

__all__ = ["constituent_claims", "summarize_constituents", "tnt_signal_gain"]

#: Metrics summarised per method and injection (median and 16-84% over seeds).
KEYS = ("auc", "max_sic", "rejection_at_0.2", "template_auc", "control_template_auc")


def _signal(r: dict[str, Any]) -> float:
    """The run's S/sqrt(B) in the SR (0 without injected signal)."""
    return float(r.get("S/sqrt(B)") or 0.0)


def summarize_constituents(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, injection) and per reference score of a method (TNT's starting autoencoder as
    ``tnt: ae_scores``): seeds, S/sqrt(B), :data:`KEYS` over seeds, training seconds, and the median max SIC over
    that of the idealized detector at the same injection (``ratio_to_idealized``)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["method"], str(r.get("injection"))), []).append(r)
    rows = []
    for (method, injection), rs in groups.items():
        base = {"injection": injection, "seeds": len(rs), "S/sqrt(B)": float(np.median([_signal(r) for r in rs])),
                "seconds_train": spread(r.get("seconds_train") for r in rs)["median"]}  # fmt: skip
        rows.append({"method": method, **base, **{k: spread(r.get(k) for r in rs) for k in KEYS}})
        for name in dict.fromkeys(n for r in rs for n in (r.get("reference_scores") or {})):
            refs = [r["reference_scores"][name] for r in rs if name in (r.get("reference_scores") or {})]
            rows.append({"method": f"{method}: {name}", **base, "seconds_train": None,
                         **{k: spread(ref.get(k) for ref in refs) for k in KEYS}})  # fmt: skip
    ideal = {r["injection"]: r["max_sic"]["median"] for r in rows if r["method"] == "idealized"}
    for r in rows:  # the feature-level idealized detector on the same injected events is the yardstick
        sic, ref = r["max_sic"]["median"], ideal.get(r["injection"])
        r["ratio_to_idealized"] = sic / ref if sic is not None and ref else None
    return rows


def _by_seed(results: Iterable[dict[str, Any]], method: str) -> dict[tuple[str, int], dict[str, Any]]:
    return {(str(r.get("injection")), int(r["seed"])): r for r in results if r["method"] == method}


def tnt_signal_gain(results: list[dict[str, Any]], reference: str = "ae_scores") -> list[dict[str, Any]]:
    """Per injection with signal: per seed, TNT's AUC gain over its starting autoencoder minus the same gain in the
    run of that seed without signal; mean, standard error, and how many standard errors above zero."""
    runs = _by_seed(results, "tnt")

    def gain(r: dict[str, Any]) -> float | None:
        ref = (r.get("reference_scores") or {}).get(reference) or {}
        return None if r.get("auc") is None or ref.get("auc") is None else r["auc"] - ref["auc"]

    zero = {seed: gain(r) for (_, seed), r in runs.items() if _signal(r) == 0}
    out = []
    for injection in dict.fromkeys(inj for (inj, _), r in runs.items() if _signal(r) > 0):
        diffs, signal = [], []
        for (inj, seed), r in runs.items():
            g = gain(r)
            if inj == injection and g is not None and zero.get(seed) is not None:
                diffs.append(g - zero[seed])
                signal.append(_signal(r))
        if len(diffs) < 2:
            continue
        d = np.asarray(diffs)
        se = float(d.std(ddof=1) / np.sqrt(len(d)))
        out.append({"injection": injection, "S/sqrt(B)": float(np.median(signal)), "seeds": len(d),
                    "mean": float(d.mean()), "standard_error": se,
                    "standard_errors": float(d.mean() / se) if se > 0 else float("inf")})  # fmt: skip
    return out


def constituent_claims(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The talks' claims measured by this run (see the module docstring), one dict each with ``claim``, ``value``,
    ``holds`` and the numbers behind it."""
    claims: list[dict[str, Any]] = []
    for g in tnt_signal_gain(results):
        claims.append({
            "claim": f"tnt's AUC gain over its autoencoder with signal ({g['injection']}, S/sqrt(B) "
                     f"{g['S/sqrt(B)']:.1f}) minus without, over {g['seeds']} seeds, > 3 standard errors",
            "value": g["standard_errors"], **g, "holds": g["standard_errors"] > 3,
        })  # fmt: skip
    rows = summarize_constituents(results)

    def med(method: str, key: str, injection: str) -> float | None:
        row = next((r for r in rows if r["method"] == method and r["injection"] == injection), None)
        return None if row is None else row[key]["median"]

    for injection in dict.fromkeys(r["injection"] for r in rows):
        t_auc, control = med("constituent-drapes", "template_auc", injection), med(
            "constituent-drapes", "control_template_auc", injection)
        if t_auc is not None and control is not None:  # the template is of the background: any injection
            claims.append({"claim": f"constituent-drapes template AUC within 0.05 of 0.5 while its sideband control "
                                    f"> 0.55 ({injection}; control {control:.3f})",
                           "value": t_auc, "control": control, "holds": abs(t_auc - 0.5) <= 0.05 and control > 0.55})
    for injection in dict.fromkeys(r["injection"] for r in rows if r["S/sqrt(B)"] > 0):
        ae_rej, ae_auc = med("autoencoder", "rejection_at_0.2", injection), med("autoencoder", "auc", injection)
        dark = med("darkclr", "rejection_at_0.2", injection)
        if dark is not None and ae_rej:
            claims.append({"claim": f"darkclr's 1/eps_B at eps_S = 0.2 >= 1.3 x the autoencoder's ({injection})",
                           "value": dark / ae_rej, "holds": dark >= 1.3 * ae_rej})  # fmt: skip
        clr = med("clr", "auc", injection)
        if clr is not None and ae_auc is not None:
            claims.append({"claim": f"clr's (AnomalyCLR) AUC above the autoencoder's ({injection})",
                           "value": clr - ae_auc, "holds": clr > ae_auc})  # fmt: skip
    return claims
