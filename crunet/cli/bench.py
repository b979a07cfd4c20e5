"""``crunet bench``: speed measurements written to a JSON file (never timed assertions in tests)."""

from __future__ import annotations

import argparse

from recon.machine import DEVICES


def _shape(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) == 1:
        parts = parts * 2
    try:
        ny, nx = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 128 or 246x256, got '{text}'") from None
    if min(ny, nx) < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got '{text}'")
    return ny, nx


def _count(text: str) -> int:
    """A count of at least 1 (repeats, coils, frames, slices, clients): 0 would time nothing."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got '{text}'") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="bench.json", help="result file (default bench.json)")
    p.add_argument("--what", nargs="+",
                   choices=("coils", "methods", "bank", "server", "network", "operators", "train"),
                   default=["coils", "methods", "bank", "server"],
                   help="what to measure (default: coils methods bank server; bank: the feature bank's cost, "
                        "crunet_ca's model (or the first --weights') without a bank, with conv fusion, with "
                        "CA and a 3x3 or a 1x1 projection, at equal size and wrap, as ratios; server: crunet "
                        "serve with --clients concurrent clients, latency, throughput and memory; network: the "
                        "model of --model-config alone in fp32, TF32, bf16 and compiled, and the chain with maps; "
                        "operators: the SENSE normal operator of a line mask with FFTs, the DFT's rows and one "
                        "matrix per readout column, and 10 CG-SENSE steps with each, as ratios; train: one "
                        "training step of --train-config in fp32 and, where native, bf16)")
    p.add_argument("--sizes", nargs="+", type=_shape, default=[(128, 128), (246, 256)],
                   help="matrix sizes (default 128 246x256)")
    p.add_argument("--coils", type=_count, default=10)
    p.add_argument("--repeats", type=_count, default=5)
    p.add_argument("--methods", nargs="*", default=None,
                   help="methods to time: zf, sense, lps and installed trained weights by name (crunet_ca, "
                        "crunet, crunet_conv, crnn), name:key=value for options; default: zf sense lps "
                        "crunet_ca crunet_ca:precision=fp32 crunet_ca:refine=off (the default precision, bf16 "
                        "where native, against fp32, and the default refinement against the network alone, in "
                        "one run); zf sense lps "
                        "when --weights is given. bart_tv (BART's temporal TV, bart pics -R T) is timed beside "
                        "them when BART is installed")
    p.add_argument("--shifted-mask", action="store_true",
                   help="methods, operators: the R-line lattice moves one line per frame (default: the same "
                        "lines in every frame); the default methods then add crunet_ca:mean_consistency=off, the "
                        "temporal-mean step's cost and gain in one run (on a fixed mask the step does nothing)")
    p.add_argument("--source", default="real",
                   help="methods: the slice's image: real (default; the shipped held-out patient, acquired with "
                        "the held-out dipole coils at SNR 50), phantom, or a .npz cine series")
    p.add_argument("--weights", nargs="+", default=[], metavar="DIR",
                   help="trained weights directories, each timed as a method (labelled by folder name)")
    p.add_argument("--clients", nargs="+", type=_count, default=[1, 4, 8],
                   help="server: numbers of concurrent clients to run in turn (default 1 4 8)")
    p.add_argument("--slices", type=_count, default=3, help="server: slices in each client's series (default 3)")
    p.add_argument("--chain", default="crunet", help="server: the chain the clients name (default crunet)")
    p.add_argument("--pace", type=float, default=0.0,
                   help="server: seconds between a client's acquisitions (a scanner's TR; default 0, as fast "
                        "as possible); with pace > 0 each slice's latency after its last line is measured")
    p.add_argument("--model-config", default="configs/paper/crunet_ca.yaml",
                   help="network: run or model config whose model is timed, random weights (default "
                        "configs/paper/crunet_ca.yaml, paper size); the first --weights instead when given")
    p.add_argument("--frames", type=_count, default=25, help="network: cardiac frames (default 25)")
    p.add_argument("--train-config", default="configs/cpu/crunet_ca.yaml",
                   help="train: the run config whose training step is timed on its first sample (default "
                        "configs/cpu/crunet_ca.yaml, the shipped crunet_ca's recipe)")
    p.add_argument("--variants", nargs="+", default=["fp32", "tf32", "bf16", "compile"],
                   choices=("fp32", "tf32", "bf16", "compile"),
                   help="network: arithmetic variants (default all; compile takes minutes on a CPU)")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="auto (default): CUDA when available, else CPU")


def _seconds(entry) -> str:
    """A bench entry's median seconds as ``0.123 s``, or its reason for not running."""
    return f"{entry['seconds']:.3f} s" if isinstance(entry, dict) else str(entry)


def _rates_text(r: dict) -> str:
    """``matmul GFLOP/s fp32 185 (2 threads)`` from a network or training result."""
    rates = ", ".join(f"{a} {g:.0f}" for a, g in r["matmul_gflops"].items())
    return f"matmul GFLOP/s {rates} ({r['threads']} threads)"


def _variant_text(row: dict, unit: str) -> str:
    """One arithmetic variant's line: its note, or seconds per ``unit`` with the ratio to fp32,
    GFLOP/s and fractions of the matmul rate (:mod:`crunet.bench.arithmetic`)."""
    if row.get("note"):
        return row["note"]
    ratio = f"x{row['ratio_to_fp32']:.2f} of fp32, " if row.get("ratio_to_fp32") else ""
    own = f"{row['fraction_of_matmul']:.0%} of its matmul, " if row.get("fraction_of_matmul") else ""
    return (f"{row['seconds']:.3f} s/{unit} ({ratio}{row['gflops']:.0f} GFLOP/s, {own}"
            f"{row['fraction_of_fp32_matmul']:.0%} of fp32 matmul)")


def _bank_model(args: argparse.Namespace):
    """The CRUNet-MR config the bank benchmark varies: the first --weights', else the installed
    default weights', else --model-config's."""
    from recon.pipeline import DEFAULT_METHOD
    from recon.train.config import load_run_config
    from recon.weights import find_weights, weights_info

    ref = args.weights[0] if args.weights else find_weights(DEFAULT_METHOD)
    return weights_info(ref).config if ref else load_run_config(args.model_config).model


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import time
    from pathlib import Path

    from recon.machine import describe_machine, resolve_device
    from recon.pipeline import DEFAULT_METHOD, compared_methods, method_configs

    device = str(resolve_device(args.device))
    result = {"created": time.strftime("%Y-%m-%dT%H:%M:%S"), **describe_machine(device), "load": os.getloadavg(),
              "coils": [], "methods": []}
    methods = compared_methods(args.methods, args.weights)
    if args.methods is None and DEFAULT_METHOD in methods:
        methods += (f"{DEFAULT_METHOD}:precision=fp32",)  # the default precision against fp32, one run
        methods += (f"{DEFAULT_METHOD}:refine=off",)  # the default refinement's cost and gain, one run
        if args.shifted_mask:  # the temporal-mean step against none, one run
            methods += (f"{DEFAULT_METHOD}:mean_consistency=off",)
    if "methods" in args.what:
        method_configs(methods, args.weights, device=args.device)  # unknown methods / missing weights: fail now
    for size in args.sizes:
        if "coils" in args.what:
            from crunet.bench.coils import bench_coil_maps

            r = bench_coil_maps(size, n_coils=args.coils, repeats=args.repeats)
            result["coils"].append(r)
            merged = r["merged"]
            print(f"coil maps {size[0]}x{size[1]}: ours {r['ours']['seconds']:.3f} s, bart "
                  f"{_seconds(r.get('bart'))}, second set merged {_seconds(merged)}", flush=True)
        if "methods" in args.what:
            from crunet.bench.methods import bench_methods

            r = bench_methods(size, n_coils=args.coils, methods=tuple(methods), repeats=max(1, args.repeats // 2),
                              device=args.device, weights=tuple(args.weights), shifted_mask=args.shifted_mask,
                              source=args.source)
            result["methods"].append(r)
            for m, v in r["methods"].items():
                print(f"{size[0]}x{size[1]} {m:<9} {v['seconds']:.3f} s/slice (x{v['ratio_to_fastest']:.1f}) "
                      f"PSNR {v['psnr']:.2f}", flush=True)
        if "bank" in args.what:
            from crunet.bench.bank import bench_bank

            r = bench_bank(_bank_model(args), shape=size, frames=12, coils=args.coils, repeats=args.repeats,
                           device=args.device)
            result.setdefault("bank", []).append(r)
            print(f"bank {size[0]}x{size[1]} ({r['model']}, {r['precision']}): " + ", ".join(
                f"{v} {row['seconds']:.3f} s (x{row['ratio_to_none']:.2f})" for v, row in r["variants"].items()),
                  flush=True)
        if "operators" in args.what:
            from crunet.bench.operators import bench_normal_forms

            r = bench_normal_forms(size, coils=args.coils, repeats=args.repeats, shifted=args.shifted_mask)
            result.setdefault("operators", []).append(r)
            lattice = "shifted" if r["shifted_mask"] else "fixed"
            print(f"normal operator {size[0]}x{size[1]}, {r['frames']} frames, {r['coils']} coils, {r['lines']} lines "
                  f"({lattice} mask; chosen: {r['chosen']}): "
                  + ", ".join(f"{f} {row['seconds'] * 1e3:.1f} ms (x{row['ratio_to_fft']:.2f}; build "
                              f"{row['build_s'] * 1e3:.1f} ms; 10 CG steps {row['cg_seconds']:.3f} s)"
                              if "seconds" in row else f"{f}: {row['note']}" for f, row in r["forms"].items()),
                  flush=True)
        Path(args.out).write_text(json.dumps(result, indent=2, default=float))
    if "network" in args.what:
        from crunet.bench.network import bench_network
        from recon.train.config import load_run_config

        weights = args.weights[0] if args.weights else None
        model_config = None if weights else load_run_config(args.model_config).model
        for size in args.sizes:
            r = bench_network(model_config, weights, shape=size, frames=args.frames, coils=args.coils,
                              variants=tuple(args.variants), repeats=args.repeats, device=args.device)
            result.setdefault("network", []).append(r)
            print(f"network {size[0]}x{size[1]}: {r['gflop_per_forward']:.1f} GFLOP per forward; "
                  f"{_rates_text(r)}", flush=True)
            for v, row in r["variants"].items():
                print(f"network {size[0]}x{size[1]} {v:<8} {_variant_text(row, 'slice')}", flush=True)
            c = r["chain"]
            print(f"chain {size[0]}x{size[1]}: {c['seconds']:.3f} s/slice (maps {c['seconds_maps']:.3f} s, "
                  f"network {c['seconds_method']:.3f} s)", flush=True)
            Path(args.out).write_text(json.dumps(result, indent=2, default=float))
    if "train" in args.what:
        from crunet.bench.train import bench_train_step

        r = bench_train_step(args.train_config, repeats=args.repeats, device=args.device)
        result["train"] = r
        k = r["batch_shape"]["k"]
        print(f"train step ({args.train_config}, k-space {'x'.join(map(str, k))}, {r['parameters']} parameters): "
              f"{r['gflop_per_step']:.1f} GFLOP per step; {_rates_text(r)}", flush=True)
        for v, row in r["variants"].items():
            print(f"train step {v:<5} {_variant_text(row, 'step')}", flush=True)
        Path(args.out).write_text(json.dumps(result, indent=2, default=float))
    if "server" in args.what:
        from crunet.bench.server import bench_server

        size = args.sizes[0]
        r = bench_server(tuple(args.clients), n_slices=args.slices, shape=size, n_coils=args.coils, chain=args.chain,
                         pace=args.pace)
        result["server"] = r
        for row in r["runs"]:
            ratio = row.get("throughput_ratio")  # None without a 1-client run
            print(f"server {row['clients']} client(s): {row['slices_per_s']:.3f} slices/s"
                  + (f" (x{ratio:.2f} of 1 client)" if ratio is not None else "")
                  + f", first image {row['first_image_s_median']:.2f} s, "
                  f"{row['images']}/{row['images_expected']} images, server peak RSS {row['rss_mb_peak']:.0f} MiB "
                  f"(idle {r['rss_mb_idle']:.0f})", flush=True)
        if r.get("one_at_a_time"):
            o = r["one_at_a_time"]
            gain = r.get("side_by_side_gain")  # None without a 1-client run
            print(f"server 1 client, one slice at a time (--parallel-slices 1): {o['slices_per_s']:.3f} slices/s, "
                  f"first image {o['first_image_s_median']:.2f} s"
                  + (f"; side by side x{gain:.2f}" if gain is not None else ""), flush=True)
        Path(args.out).write_text(json.dumps(result, indent=2, default=float))
    print(f"results: {args.out}")
    return 0

