"""Packaging for cmsa_tf: Cross-Modal Self-Attention Network (CVPR 2019) in TF2 / Keras 3."""

import setuptools

INSTALL_REQUIRES = [
    "tensorflow==2.21.*",  # ships Keras 3 as tf.keras
    "tensorboard",  # not pulled in by the CPU wheel
    "absl-py",
    "ml-collections",
    "numpy",
    "pycocotools",
    "pydensecrf2",  # installs the module `pydensecrf`
    "pillow",
    "matplotlib",
    "tqdm",
]
DEMO_REQUIRES = ["gradio>=5", "gradio_client"]

setuptools.setup(
    name="cmsa_tf",
    version="0.1.0",
    description=(
        "Cross-Modal Self-Attention Network for referring image segmentation "
        "(CVPR 2019) in TensorFlow 2 / Keras 3."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["cmsa_tf", "cmsa_tf.*"]),
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # cmsa-demo, the web page over an export (Gradio, as this field's demos).
        "demo": DEMO_REQUIRES,
        # The browser tests drive Debian's chromium package through Playwright (no downloaded
        # browsers); .ci/run installs chromium with apt-get. pytest-xdist runs `make test` on
        # every core.
        "test": [
            "pytest",
            "pytest-timeout",
            "pytest-xdist",
            "ruff",
            *DEMO_REQUIRES,
            "playwright",
        ],
    },
    entry_points={
        "console_scripts": [
            "cmsa-predict = cmsa_tf.predict:run",
            "cmsa-demo = cmsa_tf.demo.__main__:run",
        ]
    },
    license="Apache-2.0",
)
