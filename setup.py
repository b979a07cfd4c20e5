"""crunet-gadgetron: CRUNet-MR cine reconstruction as a Gadgetron plugin."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _version() -> str:
    for line in (HERE / "recon" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip('"')
    raise RuntimeError("recon/__init__.py has no __version__")


def _weights_data_files() -> list[tuple[str, list[str]]]:
    """One ``share/crunet-gadgetron/weights/<name>`` entry per shipped weights folder (with a manifest)."""
    return [(f"share/crunet-gadgetron/weights/{d.name}", [str(f.relative_to(HERE)) for f in sorted(d.iterdir())
                                                          if f.is_file()])
            for d in sorted(HERE.glob("weights/*/")) if (d / "manifest.json").is_file()]


setup(
    name="crunet-gadgetron",
    version=_version(),
    description="Accelerated cardiac cine MRI reconstruction (CRUNet-MR with a cross-cascade "
    "feature bank) as a Gadgetron plugin",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["recon", "recon.*", "gadgets", "gadgets.*", "crunet", "crunet.*"]),
    install_requires=[
        # torch is installed first by the Makefile (torch==2.13.0, CPU wheel); any
        # release in this range works, so pip keeps the one that is there.
        "torch>=2.1,<=2.14.1",
        "numpy>=1.24",
        "scipy>=1.10",
        "h5py>=3.8",
        "ismrmrd>=1.15",  # ismrmrd.serialization (the tests' stand-in clients) is new in 1.15
        # pinned: gadgets/external.py relies on private internals of this release (Connection.SocketWrapper,
        # Connection.Struct, Connection._default_readers/_default_writers/_read_config/_read_header, and it
        # replaces write_array in gadgetron.external.writers and gadgetron.types.recon_data); it checks them on
        # import and names the installed version when they are missing (GADGETRON_VERSION there)
        "gadgetron==1.4.1",
        "pyyaml>=6",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "safetensors>=0.4",
        "threadpoolctl>=3.1",  # numpy's BLAS kept to one thread beside torch's (recon.machine)
    ],
    extras_require={
        "dev": ["pytest>=7", "scikit-image>=0.21"],
    },
    entry_points={"console_scripts": ["crunet = crunet.cli:main"]},
    include_package_data=True,
    # the Gadgetron chains, found by gadgets.configs.config_dir() in an installed copy, and the
    # trained weights (weights/<name>/...), found by name by recon.weights.weights_search_path()
    data_files=[("share/crunet-gadgetron/xml_configs", [str(p.relative_to(HERE)) for p in sorted(HERE.glob("xml_configs/*.xml"))]),
                # the real series the demo runs on (crunet.demo.demo_series)
                ("share/crunet-gadgetron/data", [str(p.relative_to(HERE)) for p in sorted(HERE.glob("data/*"))])]
    + _weights_data_files(),
    zip_safe=False,
)
