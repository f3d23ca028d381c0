"""Static checks of docker/ (no Docker engine here): what the images copy exists, the extras they install
exist in setup.py, and run.sh passes GPUs, IPC, the runs volume and the W&B key from the environment."""

import ast
import os
import re
import shlex
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILES = ["docker/Dockerfile", "docker/Dockerfile.isaacgym", "docker/Dockerfile.isaaclab"]


def setup_extras():
    tree = ast.parse(open(os.path.join(ROOT, "setup.py")).read())
    names = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "extras"
        ):
            names.update(ast.literal_eval(k) for k in node.value.keys)
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript):
            target = node.targets[0]
            if isinstance(target.value, ast.Name) and target.value.id == "extras":
                names.add(ast.literal_eval(target.slice))
    return names


def instructions(path):
    """(instruction, argument string) pairs with continuation lines joined."""
    text = re.sub(r"\\\n", " ", open(os.path.join(ROOT, path)).read())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def user_supplied(path):
    return {
        m.group(1) for m in re.finditer(r"#\s*user-supplied:\s*(\S+)", open(os.path.join(ROOT, path)).read())
    }


@pytest.mark.parametrize("path", DOCKERFILES)
def test_copied_files_exist(path):
    allowed_missing = user_supplied(path)
    sources = []
    for word, rest in instructions(path):
        if word in ("COPY", "ADD"):
            args = [a for a in shlex.split(rest) if not a.startswith("--")]
            assert "--from" not in rest
            sources += args[:-1]
    assert sources
    for src in sources:
        if src in allowed_missing:
            continue
        assert os.path.exists(os.path.join(ROOT, src)), "%s copies %s, which is not in the repository" % (
            path,
            src,
        )


@pytest.mark.parametrize("path", DOCKERFILES)
def test_installs_the_package_with_existing_extras(path):
    extras = setup_extras()
    found = []
    for word, rest in instructions(path):
        if word == "RUN":
            found += re.findall(r"""pip install -e ["']?\.\[([a-z0-9_,-]+)\]""", rest)
    assert found, "%s does not pip-install the package" % path
    for group in found:
        for extra in group.split(","):
            assert extra in extras, "%s installs extra %r, which setup.py does not define" % (path, extra)


def test_bases_and_isaacgym_specifics():
    modern = dict(instructions("docker/Dockerfile"))
    assert "cuda" in modern["FROM"] and "pytorch" in modern["FROM"]
    assert re.search(
        r"\.\[[^\]]*mujoco[^\]]*mjwarp[^\]]*wandb", open(os.path.join(ROOT, "docker/Dockerfile")).read()
    )
    ig = open(os.path.join(ROOT, "docker/Dockerfile.isaacgym")).read()
    assert "nvcr.io/nvidia/pytorch:23.04-py3" in ig  # the last NGC PyTorch with Python 3.8
    assert user_supplied("docker/Dockerfile.isaacgym") == {"docker/IsaacGym_Preview_4_Package.tar.gz"}
    assert "pip install -e /opt/isaacgym/python" in ig and "numpy<1.24" in ig
    assert re.search(r"ISAACGYMENVS_REF=release/1\.5\.1", ig)


def test_isaaclab_image():
    """Python 3.12, torch 2.11 for CUDA 13, Isaac Lab 3.0 by pip from NVIDIA's index (its pip-install docs), and an
    import check of the adapter; run.sh knows the image."""
    lab = dict(instructions("docker/Dockerfile.isaaclab"))
    assert "python:3.12" in lab["FROM"]
    text = open(os.path.join(ROOT, "docker/Dockerfile.isaaclab")).read()
    assert "ISAACLAB_VERSION=3.0.0" in text and "TORCH_VERSION=2.11.0" in text and "whl/cu130" in text
    assert re.search(r'pip install "isaaclab\[\$\{ISAACLAB_EXTRAS\}\]==\$\{ISAACLAB_VERSION\}"', text)
    assert "--extra-index-url https://pypi.nvidia.com" in text and "pql_scaling.envs.isaaclab_backend" in text
    assert not user_supplied("docker/Dockerfile.isaaclab")  # nothing licence-gated to bring
    assert "pql-scaling:isaaclab" in open(os.path.join(ROOT, "docker/run.sh")).read()


def test_run_script():
    path = os.path.join(ROOT, "docker/run.sh")
    assert os.access(path, os.X_OK)
    subprocess.run(["bash", "-n", path], check=True)
    text = open(path).read()
    for needle in ("--gpus all", "--ipc=host", ":/workspace/runs", "WANDB_API_KEY", "pql-scaling:isaacgym"):
        assert needle in text
    assert not re.search(r"WANDB_API_KEY=\S", text)  # the key's value never appears in the script
