"""pql-scaling: Parallel Q-Learning plus compute-optimal scaling analysis.

Install on a CPU machine without pulling CUDA wheels:
    pip install torch==2.13.0 && pip install -e ".[dev]"
"""
from setuptools import find_packages, setup

extras = {
    "wandb": ["wandb>=0.15"],
    "analysis": ["numpy", "scipy>=1.7", "pandas>=1.3", "scikit-learn>=1.0", "matplotlib>=3.5"],
    "mujoco": ["mujoco>=3.3", "gymnasium[mujoco]>=1.0"],  # the Rollout class with a persistent thread pool
    "mjwarp": ["mujoco>=3.3", "mujoco-warp>=3.3", "warp-lang>=1.10", "gymnasium[mujoco]>=1.0"],
    "ray": ["ray[default]>=2.9"],
}
extras["dev"] = sorted(
    set(
        extras["wandb"]
        + extras["analysis"]
        + [
            "pytest>=7",
            "pytest-timeout",
            "gymnasium[classic-control]>=1.0",
            "stable-baselines3>=2.0",
            "vermin>=1.6",
            "mujoco>=3.3",
            "gymnasium[mujoco]>=1.0",
        ]
    )
)
extras["all"] = sorted({d for k, v in extras.items() if k not in ("mjwarp",) for d in v})

setup(
    name="pql-scaling",
    version="0.1.0",
    description="Parallel Q-Learning on massively parallel simulators, with compute-optimal scaling analysis",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.8",
    packages=find_packages(include=["pql_scaling*", "envs*", "tasks*", "analysis*"]),
    package_data={"tasks": ["*.yaml", "isaacgym/*.yaml"]},
    install_requires=[
        "torch>=2.0",
        "numpy",
        "pyyaml>=5.1",
        "omegaconf>=2.3",
        "rich>=12",
    ]
    + extras["analysis"],
    extras_require=extras,
    entry_points={"console_scripts": ["pql-scale=pql_scaling.cli:main"]},
    license="MIT",
)
