"""Which shipped models each part of ``crunet report`` compares: the paper's learned methods,
the reference, the bank-depth ablation and the bank comparisons trained alike.

One module both the report (:mod:`crunet.report`) and its pages
(:mod:`crunet.report_markdown`, :mod:`crunet.report_claims`) read, so that none of
them imports another one back.
"""

from __future__ import annotations

from recon.weights import DEFAULT_WEIGHTS

#: Learned methods of the paper's comparison, in table order; the reference (crunet_ca) last.
LEARNED = ("crnn", "crnn_3k", "promptmr", "crunet", "crunet_conv", "crunet_3k", "crunet_conv_3k", "crunet_ca_k2",
           "crunet_ca_k3", "crunet_ca_kall", "crunet_ca")
#: The method every other one is tested against (the paper: CRUNet-MR w/ CA), run as every entry
#: point runs it (with the default refinement after the network).
REFERENCE = DEFAULT_WEIGHTS
#: The reference's network alone (its rows beside the refined ones; the other learned methods are
#: refined alike, as users run them).
NETWORK_ALONE = f"{REFERENCE}:refine=off"
#: The bank-depth ablation: K = all earlier cascades (the shipped crunet_ca, and crunet_ca_kall
#: trained exactly as the K = 3 and K = 2 models), the 3 and the 2 most recent.
BANK_DEPTH = ("crunet_ca", "crunet_ca_kall", "crunet_ca_k3", "crunet_ca_k2")
#: K = all on the recipe and steps of the K = 2 / 3 models: the depth comparison's control.
DEPTH_CONTROL = "crunet_ca_kall"
#: No bank, conv bank, CA bank trained alike (the bank-depth models' recipe, 3,000 steps): the
#: bank claims use them when installed (the shipped crunet / crunet_conv / crunet_ca differ in training).
EQUAL_BANK = ("crunet_3k", "crunet_conv_3k", DEPTH_CONTROL)
#: The shipped no-bank, conv-bank and CA-bank models.
SHIPPED_BANK = ("crunet", "crunet_conv", REFERENCE)


def depth_line(depths: dict[str, int]) -> tuple[list[str], str | None]:
    """The installed depth models compared along K in the axis' order (K = 2, 3, then all), and the
    one shown beside them (or None).

    With the control (:data:`DEPTH_CONTROL`, K = all trained as K = 2 / 3) installed, the line
    is the control and the K = 2 / 3 models, and the shipped crunet_ca (K = all, trained
    otherwise) stands beside it; without it, crunet_ca is the line's K = all."""
    beside = REFERENCE if DEPTH_CONTROL in depths and REFERENCE in depths else None
    line = sorted((n for n in depths if n != beside), key=lambda n: depths[n] or float("inf"))  # all (0) last
    return line, beside
