"""``crunet demo``: the main job end to end on the embedded default dataset."""

from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_output", help="output folder (default demo_output)")


def run(args: argparse.Namespace) -> int:
    from crunet.demo import run_demo

    report = run_demo(args.out)
    for r in report["results"]:
        print(f"slice {r['slice']}  {r['method']:<12} PSNR {r['psnr']:6.2f} dB  SSIM {r['ssim']:.3f}  "
              f"{r['seconds']:.2f} s/slice")
    for label, m in report["means"].items():
        print(f"mean     {label:<12} PSNR {m['psnr']:6.2f} dB  SSIM {m['ssim']:.3f}  {m['seconds']:.2f} s/slice")
    print(report["verdict"])
    print(f"raw data : {report['raw_file']}")
    print(f"images   : {report['images_file']} (group '{report['images_group']}')")
    print(f"figures  : {', '.join(report['figures'])}")
    print(f"report   : {args.out}/report.md (and report.json)")
    return 0
