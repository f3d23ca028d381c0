"""pql-scaling: Parallel Q-Learning plus compute-optimal scaling analysis.

Install on a CPU machine without pulling CUDA wheels:
    pip install torch==2.13.0 && pip install -e ".[dev]"
"""

from setuptools import find_packages, setup

extras = {
    "wandb": [
        "wandb>=0.19.10"
    ],  # reinit="create_new": a population's members as concurrent runs in one process
    # `analyze` on other trainers' logs: TensorBoard's event reader (format: tensorboard), Parquet (format: table)
    "logs": ["tensorboard>=2.10", "pyarrow>=10"],
    # scipy >= 1.12 for optimize.isotonic_regression; scikit-learn is only the tests' reference
    "analysis": ["numpy", "scipy>=1.12", "pandas>=1.3", "matplotlib>=3.5", "threadpoolctl>=3"],
    "mujoco": ["mujoco>=3.3", "gymnasium[mujoco]>=1.0"],  # the Rollout class with a persistent thread pool
    "mjwarp": ["mujoco>=3.3", "mujoco-warp>=3.3", "warp-lang>=1.10", "gymnasium[mujoco]>=1.0"],
    "ray": ["ray>=2.9"],  # `pql-scale sweep --launcher ray`
    "slurm": ["submitit>=1.5"],  # `pql-scale sweep --launcher slurm` (job arrays)
}
extras["dev"] = sorted(
    set(
        extras["wandb"]
        + extras["analysis"]
        + extras["logs"]
        + extras["ray"]
        + extras["slurm"]
        + [
            "pytest>=7",
            "pytest-timeout",
            "hypothesis>=6",  # tests/test_fuzz.py
            "gymnasium[classic-control]>=1.0",
            "stable-baselines3>=2.0",
            "vermin>=1.6",
            "ruff==0.17.6",  # tests/test_style.py; pinned: another version may format differently
            "scikit-learn>=1.0",
            "mujoco>=3.3",
            "gymnasium[mujoco]>=1.0",
            "shimmy[dm-control]>=2.0",  # tests/test_gymnasium_backend.py trains a real dm_control task
            "dm-control>=1.0.52",  # the first dm_control for mujoco 4 (older ones pin mujoco 3)
            "mujoco-warp>=3.3",  # the mjwarp backend's tests run on Warp's CPU device
            "warp-lang>=1.10",
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
    # one import namespace: the folders envs/, tasks/ and analysis/ install as pql_scaling.envs / .tasks / .analysis
    # (a user's own `analysis/` or `tasks/` folder can never shadow them; pql_scaling/__init__.py finds them beside
    # the package in a source checkout)
    packages=find_packages(include=["pql_scaling", "pql_scaling.*"])
    + ["pql_scaling." + p for p in find_packages(include=["envs*", "tasks*", "analysis*"])],
    package_dir={
        "pql_scaling.envs": "envs",
        "pql_scaling.tasks": "tasks",
        "pql_scaling.analysis": "analysis",
    },
    package_data={
        "pql_scaling.tasks": [
            "*.yaml",
            "gpu/*.yaml",
            "isaacgym/*.yaml",
            "isaaclab/*.yaml",
            "mjwarp/*.yaml",
            "gymnasium/*.yaml",
        ]
    },
    # The training path must install on Python 3.8 (Isaac Gym): the analysis stack (scipy >= 1.12 needs
    # Python 3.9) is an extra there, and installed by default from Python 3.9 on.
    install_requires=["torch>=2.0", "numpy", "pyyaml>=5.1", "omegaconf>=2.3", "rich>=12"]
    + [dep + '; python_version >= "3.9"' for dep in extras["analysis"]],
    extras_require=extras,
    entry_points={"console_scripts": ["pql-scale=pql_scaling.cli:main"]},
    license="MIT",
)
