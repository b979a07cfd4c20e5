"""Section 5 of ``crunet report``: the paper's claims, each checked against this report's numbers.

The CRUNet-MR paper claims that aggregating features across cascades improves CRUNet-MR,
that channel-attention fusion does at least as well as conv fusion, that the gain is
larger at higher acceleration and in the dynamic (heart) region, and that fusing all
earlier cascades beats fusing the 2 or 3 most recent; its Fig. 1 puts CRUNet-MR w/ CA
above the published baselines CRNN-MRI and PromptMR. Each claim becomes one line:
**agrees**, **does not agree** or **not testable here** (a model it needs is not shipped,
or only one R was run), with the mean PSNR numbers it rests on. Differences are means over
the slices of one report; whether they are significant is the business of the tables'
daggers (section 1), not of this summary. Pure text from the report dict.

The claims are about the architecture, so they compare models trained alike where the
project has them: the bank claims use ``crunet_3k``, ``crunet_conv_3k`` and
``crunet_ca_kall`` (no bank, conv, CA on one 3,000-step recipe) when installed, the depth
claims ``crunet_ca_kall`` against K = 2 / 3 (the same recipe), the CRNN-MRI claim
``crunet_ca_kall`` against ``crnn_3k`` (the same recipe); otherwise the shipped models,
and :func:`training_caveat` says which groups mix the architecture with the training.
"""

from __future__ import annotations

from crunet.report_markdown import NAMES, label, rows_by_method
from crunet.report_models import DEPTH_CONTROL, EQUAL_BANK, REFERENCE, SHIPPED_BANK

CA = "crunet_ca"
#: The published baselines of the paper's Fig. 1 that CRUNet-MR w/ CA is claimed to beat.
BASELINES = ("crnn", "promptmr")
#: A baseline trained on the equal-training recipe (that of ``crunet_ca_kall``), by baseline.
EQUAL_BASELINES = {"crnn": "crnn_3k"}


def _has(report: dict, name: str) -> bool:
    return any(name in rows_by_method(report, r) for r in report.get("accelerations", {}))


def bank_models(report: dict) -> tuple[str, str, str]:
    """``(no bank, conv bank, CA bank)`` the bank claims compare: the models trained alike
    (:data:`crunet.report_models.EQUAL_BANK`) when the no-bank and CA ones of them are in the report,
    else the shipped ``crunet``, ``crunet_conv``, ``crunet_ca``."""
    base, _, ca = EQUAL_BANK
    return EQUAL_BANK if _has(report, base) and _has(report, ca) else SHIPPED_BANK


def baseline_pair(report: dict, name: str) -> tuple[str, str]:
    """``(CA model, baseline model)`` a baseline claim compares: ``crunet_ca_kall`` against the
    baseline trained on its recipe (:data:`EQUAL_BASELINES`) when both are in the report, else
    the shipped ``crunet_ca`` against the shipped baseline."""
    alike = EQUAL_BASELINES.get(name)
    return (DEPTH_CONTROL, alike) if alike and _has(report, alike) and _has(report, DEPTH_CONTROL) else (CA, name)


def depth_full(report: dict) -> str:
    """K = all in the depth claims: the control trained as the K = 2 / 3 models when installed, else crunet_ca."""
    return DEPTH_CONTROL if DEPTH_CONTROL in report.get("bank_depths", {}) else REFERENCE


def _gain(report: dict, r, better: str, than: str, key: str = "psnr") -> float | None:
    rows = rows_by_method(report, r)
    a, b = rows.get(better, {}).get(f"{key}_mean"), rows.get(than, {}).get(f"{key}_mean")
    return None if a is None or b is None else a - b


def _verdict(ok: bool | None) -> str:
    return "not testable here" if ok is None else ("agrees" if ok else "does not agree")


def _per_r(report: dict, better: str, than: str, key: str = "psnr") -> tuple[dict, str]:
    gains = {r: _gain(report, r, better, than, key) for r in report["accelerations"]}
    text = ", ".join(f"R = {r}: {g:+.2f} dB" for r, g in gains.items() if g is not None)
    return gains, text


def _beats(report: dict, better: str, than: str) -> tuple[bool | None, str]:
    """Whether ``better``'s mean PSNR is above ``than``'s at every R run (None: not comparable), and the numbers."""
    gains, text = _per_r(report, better, than)
    known = [g for g in gains.values() if g is not None]
    return (all(g > 0 for g in known) if known else None), text


def claims(report: dict) -> list[tuple[str, bool | None, str]]:
    """``(claim, agrees / not / None = not testable, the numbers)`` for each of the paper's claims."""
    base, conv, ca = bank_models(report)
    # the paper's names for the shipped trio; the models' own names when the trio trained alike stands in
    ca_base, ca_conv = (("w/ CA minus CRUNet-MR", "w/ CA minus w/ Conv") if (base, conv, ca) == SHIPPED_BANK
                        else (f"`{ca}` minus `{base}`", f"`{ca}` minus `{conv}`"))
    out = []
    gains, text = _per_r(report, ca, base)
    known = [g for g in gains.values() if g is not None]
    out.append((f"Feature aggregation improves CRUNet-MR ({ca_base}, PSNR)",
                (all(g > 0 for g in known) if known else None), text or f"needs {label(base)} and {label(ca)}"))
    conv_gains, conv_text = _per_r(report, ca, conv)
    known = [g for g in conv_gains.values() if g is not None]
    out.append((f"CA fusion does at least as well as conv fusion ({ca_conv}, PSNR)",
                (all(g >= 0 for g in known) if known else None), conv_text or f"needs {label(conv)} and {label(ca)}"))
    ordered = [(int(r), g) for r, g in gains.items() if g is not None]
    ordered.sort()
    if len(ordered) >= 2:
        rising = ordered[-1][1] > ordered[0][1]
        out.append((f"The gain of the bank grows with the acceleration ({ca_base}, lowest vs highest R)",
                    rising, f"R = {ordered[0][0]}: {ordered[0][1]:+.2f} dB, R = {ordered[-1][0]}: "
                            f"{ordered[-1][1]:+.2f} dB"))
    else:
        out.append(("The gain of the bank grows with the acceleration", None,
                    f"needs {label(base)} and {label(ca)} at two or more R"))
    dyn, _ = _per_r(report, ca, base, "dynamic_psnr")
    sta, _ = _per_r(report, ca, base, "static_psnr")
    pairs = [(r, dyn[r], sta[r]) for r in dyn if dyn[r] is not None and sta[r] is not None]
    out.append((f"The gain is larger in the dynamic (heart) region than in the static one ({ca_base})",
                (all(d > s for _, d, s in pairs) if pairs else None),
                "; ".join(f"R = {r}: dynamic {d:+.2f} dB, static {s:+.2f} dB" for r, d, s in pairs)
                or f"needs {label(base)} and {label(ca)}"))
    full = depth_full(report)
    for name, k in (("crunet_ca_k3", 3), ("crunet_ca_k2", 2)):
        ok, t = _beats(report, full, name)
        out.append((f"Fusing all earlier cascades beats fusing the {k} most recent (`{full}` minus K = {k}, "
                    "PSNR)", ok, t or f"needs {label(name)}"))
    for name in BASELINES:
        ours, theirs = baseline_pair(report, name)
        which = (f"w/ CA minus {NAMES[name]}" if (ours, theirs) == (CA, name)
                 else f"`{ours}` minus `{theirs}`")
        ok, t = _beats(report, ours, theirs)
        out.append((f"CRUNet-MR w/ CA beats {label(name)} ({which}, PSNR)",
                    ok, t or f"needs {label(theirs)} and {label(ours)}"))
    return out


def claims_section(report: dict) -> list[str]:
    """Section 5: one table row per claim."""
    lines = ["## 5. The paper's claims on this data", "",
             "Mean PSNR over the slices above; a claim agrees when it holds at every R run (for the growth with R: "
             "between the lowest and the highest R). Whether a difference is significant is shown by the daggers "
             "of section 1.", "", "| claim | here | numbers |", "|---|---|---|"]
    for claim, ok, numbers in claims(report):
        lines.append(f"| {claim} | **{_verdict(ok)}** | {numbers} |")
    lines += [""] + training_caveat(report)
    return lines + [""]


def training_caveat(report: dict) -> list[str]:
    """A warning per group of claims whose models were not trained alike: the claims are about the
    architecture, and a model trained longer or on other data can win or lose for that reason alone.
    Groups: the bank claims (no bank, conv, CA and the depth models they use) and each baseline
    claim (:func:`baseline_pair`)."""
    trained = report.get("training", {})
    groups = (("the bank claims", (*bank_models(report), depth_full(report), "crunet_ca_k3", "crunet_ca_k2")),
              *((f"the {NAMES[name]} claim", baseline_pair(report, name)) for name in BASELINES))
    lines = []
    for what, names in groups:
        training = {m: trained[m] for m in dict.fromkeys(names) if m in trained}
        if len(set(training.values())) > 1:
            lines += [f"**The models of {what} were not trained alike** (Methods table: " +
                      "; ".join(f"`{m}`: {t}" for m, t in training.items()) +
                      "), so these verdicts mix the architecture with the training; they test the claims only "
                      "once the models share the recipe and the steps.", ""]
    return lines
