"""Speed and memory of the cross-modal self-attention kernels.

Runs `CrossModalSelfAttention` (multimodal features included) on float32
inputs of one level, batch `--batch`, H = W = `--size`, Cv = `--visual_channels`,
Cl = `--word_channels` (C = Cv + Cl + 8), d = `--key_dim`, for each kernel and
each number of words T (all real):

    paper_factorized   form="paper",    implementation="factorized"
    paper_per_word     form="paper",    implementation="factorized_per_word"
    official_chunked   form="official", implementation="chunked"
    official_dense     form="official", implementation="dense"   (not run by default)
    paper_dense        form="paper",    implementation="dense"

Every (kernel, T) runs in its own subprocess. It builds the layer and the
inputs, then times a `tf.function` forward pass (returning the sum of G) and a
forward + backward pass (gradients w.r.t. the inputs and every weight): one
untimed warm-up call (tracing), then the median of `--runs` calls.

Peak memory is the growth of the subprocess's peak resident set size
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`) over its value after importing
TensorFlow, creating the inputs and building the layer: "peak fwd MB" is read
after the forward runs, "peak fwd+bwd MB" after the training-step runs (it
includes anything the forward runs left allocated). The dense paper kernel
runs last; a subprocess that dies (out of memory, timeout) gets a row saying so.

Usage:
    python benchmarks/attention.py                         # the full table
    python benchmarks/attention.py --size 20 --ts 4        # a quick run
    python benchmarks/attention.py --json benchmarks/results/attention.json
"""

import argparse
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time

KERNELS = {
    "paper_factorized": ("paper", "factorized"),
    "paper_per_word": ("paper", "factorized_per_word"),
    "official_chunked": ("official", "chunked"),
    "official_dense": ("official", "dense"),
    "paper_dense": ("paper", "dense"),
}
DEFAULT_KERNELS = "paper_factorized,paper_per_word,official_chunked,paper_dense"
RUN_LAST = ("official_dense", "paper_dense")  # the memory-hungry ones


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kernels", default=DEFAULT_KERNELS, help=f"comma-separated, from {sorted(KERNELS)}"
    )
    parser.add_argument("--ts", default="4,8,20", help="comma-separated numbers of words T")
    parser.add_argument("--size", type=int, default=40, help="feature map height = width")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--key_dim", type=int, default=512)
    parser.add_argument("--visual_channels", type=int, default=1000)
    parser.add_argument("--word_channels", type=int, default=1000)
    parser.add_argument("--query_chunk_size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measurement (>= 3)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=1200.0,
        help="seconds allowed to one (kernel, T) subprocess",
    )
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--t", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    kernels = [k.strip() for k in args.kernels.split(",") if k.strip()]
    unknown = [k for k in kernels if k not in KERNELS]
    if unknown:
        parser.error(f"unknown kernels {unknown}; choose from {sorted(KERNELS)}")
    args.kernels = [k for k in kernels if k not in RUN_LAST] + [k for k in RUN_LAST if k in kernels]
    try:
        args.ts = [int(t) for t in args.ts.split(",") if t.strip()]
    except ValueError:
        parser.error(f"--ts must be comma-separated integers, got {args.ts!r}")
    if not args.ts or min(args.ts) <= 0:
        parser.error("--ts needs at least one positive T")
    if args.runs < 3:
        parser.error("--runs must be at least 3")
    sizes = ("size", "batch", "key_dim", "visual_channels", "word_channels", "query_chunk_size")
    for name in sizes:
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be positive")
    return args


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def worker(args):
    """Measures one (kernel, T); prints one JSON line."""
    try:  # if memory runs out, let the kernel pick this process, not a neighbour's
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from cmsa_tf.layers import CrossModalSelfAttention

    form, implementation = KERNELS[args.worker]
    rng = np.random.default_rng(0)
    shape = (args.batch, args.size, args.size)
    visual = tf.constant(rng.normal(size=shape + (args.visual_channels,)), tf.float32)
    words = tf.constant(rng.normal(size=(args.batch, args.t, args.word_channels)), tf.float32)
    mask = tf.ones((args.batch, args.t), tf.int32)
    layer = CrossModalSelfAttention(
        form=form,
        implementation=implementation,
        key_dim=args.key_dim,
        query_chunk_size=args.query_chunk_size,
    )
    layer.build(visual.shape, words.shape, mask.shape)

    @tf.function
    def forward(visual, words, mask):
        return tf.reduce_sum(layer(visual, words, mask))

    @tf.function
    def forward_backward(visual, words, mask):
        with tf.GradientTape() as tape:
            tape.watch([visual, words])
            loss = tf.reduce_sum(layer(visual, words, mask))
        grads = tape.gradient(loss, [visual, words] + layer.trainable_weights)
        return loss + tf.add_n([tf.reduce_sum(g) for g in grads])

    def timed(fn):
        float(fn(visual, words, mask))  # warm-up: tracing and first run
        seconds = []
        for _ in range(args.runs):
            start = time.perf_counter()
            float(fn(visual, words, mask))
            seconds.append(time.perf_counter() - start)
        return statistics.median(seconds)

    baseline = peak_rss_mb()
    load_before = os.getloadavg()[0]
    forward_s = timed(forward)
    forward_peak = peak_rss_mb() - baseline
    train_s = timed(forward_backward)
    train_peak = peak_rss_mb() - baseline
    print(
        json.dumps(
            {
                "forward_s": forward_s,
                "forward_backward_s": train_s,
                "peak_forward_mb": forward_peak,
                "peak_forward_backward_mb": train_peak,
                "baseline_rss_mb": baseline,
                "load_average": [load_before, os.getloadavg()[0]],  # 1-minute, before / after
            }
        )
    )


def measure(args, kernel, num_words):
    """Runs one (kernel, T) in a subprocess; returns its row."""
    row = {
        "kernel": kernel,
        "T": num_words,
        "size": args.size,
        "batch": args.batch,
        "key_dim": args.key_dim,
        "channels": args.visual_channels + args.word_channels + 8,
    }
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        kernel,
        "--t",
        str(num_words),
        "--size",
        str(args.size),
        "--batch",
        str(args.batch),
        "--key_dim",
        str(args.key_dim),
        "--visual_channels",
        str(args.visual_channels),
        "--word_channels",
        str(args.word_channels),
        "--query_chunk_size",
        str(args.query_chunk_size),
        "--runs",
        str(args.runs),
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=args.timeout, env=env
        )
    except subprocess.TimeoutExpired:
        row["error"] = f"timed out after {args.timeout:.0f} s"
        return row
    row["wall_s"] = time.perf_counter() - start
    if done.returncode == 0:
        try:
            row.update(json.loads(done.stdout.strip().splitlines()[-1]))
            return row
        except (ValueError, IndexError):
            row["error"] = "worker printed no result"
            return row
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        reason = " (out of memory)" if -done.returncode == signal.SIGKILL else ""
        row["error"] = f"killed by {name}{reason}"
    else:
        tail = done.stderr.strip().splitlines()[-1:] or ["no message"]
        memory = any(word in done.stderr for word in ("MemoryError", "ResourceExhausted", "OOM"))
        row["error"] = ("out of memory: " if memory else "failed: ") + tail[0][:200]
    return row


def table(rows):
    lines = [
        "| kernel | T | forward s | fwd+bwd s | peak fwd MB | peak fwd+bwd MB | note |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['kernel']} | {row['T']} | - | - | - | - | {row['error']} |")
        else:
            lines.append(
                f"| {row['kernel']} | {row['T']} | {row['forward_s']:.3f} | "
                f"{row['forward_backward_s']:.3f} | {row['peak_forward_mb']:.0f} | "
                f"{row['peak_forward_backward_mb']:.0f} | |"
            )
    return "\n".join(lines)


def comparisons(rows):
    """The paper form's ratios per T: dense / factorized, and word by word / factorized."""
    by_key = {(r["kernel"], r["T"]): r for r in rows if "error" not in r}
    lines = []
    for (kernel, num_words), fast in sorted(by_key.items(), key=lambda item: item[0][1]):
        if kernel != "paper_factorized":
            continue
        dense = by_key.get(("paper_dense", num_words))
        if dense is not None:
            speed = dense["forward_backward_s"] / fast["forward_backward_s"]
            memory = dense["peak_forward_backward_mb"] / max(fast["peak_forward_backward_mb"], 1.0)
            lines.append(
                f"- T={num_words}: factorized forward+backward is {speed:.0f}x faster than "
                f"dense, with {memory:.1f}x less peak memory."
            )
        per_word = by_key.get(("paper_per_word", num_words))
        if per_word is not None:
            forward = per_word["forward_s"] / fast["forward_s"]
            speed = per_word["forward_backward_s"] / fast["forward_backward_s"]
            lines.append(
                f"- T={num_words}: factorized (product path) is {forward:.1f}x faster forward "
                f"and {speed:.1f}x forward+backward than word by word."
            )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    rows = []
    for kernel in args.kernels:
        for num_words in args.ts:
            print(f"measuring {kernel} T={num_words} ...", file=sys.stderr, flush=True)
            rows.append(measure(args, kernel, num_words))
    print(
        f"\nH = W = {args.size}, batch {args.batch}, d = {args.key_dim}, "
        f"C = {args.visual_channels}+{args.word_channels}+8, float32, {os.cpu_count()} CPUs, "
        f"median of {args.runs} runs; peak MB = growth of peak RSS over the post-setup "
        "baseline.\n"
    )
    print(table(rows))
    summary = comparisons(rows)
    if summary:
        print("\n" + summary)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        settings = {
            key: getattr(args, key)
            for key in (
                "size",
                "batch",
                "key_dim",
                "visual_channels",
                "word_channels",
                "query_chunk_size",
                "runs",
            )
        }
        settings.update(
            {
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "python": platform.python_version(),
            }
        )
        with open(args.json, "w") as handle:
            json.dump({"settings": settings, "rows": rows}, handle, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
