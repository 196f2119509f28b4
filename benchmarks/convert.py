"""imgpub's disk writers against qemu-img and GNU tar (+ gzip/pigz), in one table.

    uv run --no-sync python benchmarks/convert.py [--size-gib 8] [--data-gib 1] [--runs 3] [--quick]
                                                  [--targets raw,vhd,gce]
                                                  [--sources raw,qcow2,qcow2c,vmdk,vdi,ova]
                                                  [--interleave] [--no-verify]

Cases: raw, qcow2, qcow2 -c, VMDK streamOptimized, dynamic VDI and OVA sources (see corpus.py)
converted to a sparse raw file, to a fixed VHD (Azure), and to the GCE tarball. The OVA is read in
place; its baseline is `tar -xf` then `qemu-img convert` of the extracted VMDK, and imgpub runs
twice: the conversion alone, and with the manifest's SHA256 digests checked first
(`check_integrity`, as publish does). Every run is a fresh process
(all runs of one tool, then the next's; `--interleave` alternates them: see the README for why
that is not the default); the output is deleted and `sync` run before each (so no run pays for
the previous one's writeback), and the sources are read once first (warm page cache). imgpub's
time is that of the library call (open_image + write_*), measured inside its process, whose peak
RSS is reported; interpreter start-up and imports (about 0.1 s) are left out, as the library is
what is compared.
Like the CLI, that process calls imgpub.disk.allocator.keep_freed_memory() once before timing.
The raw and VHD outputs of imgpub are checked against the source by content digest (untimed).
Baselines are timed from outside: `qemu-img convert -W` (raw, vpc fixed force_size),
`tar --format=oldgnu -Sczf` (the GCE docs' command; skipped by --quick, ~45 s a run) and
`tar --format=oldgnu -S -cf - disk.raw | pigz -1 -p 2`; for compressed sources the tarball
baseline is qemu-img to a raw temp file, then tar | pigz.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import bench_dir, ensure_corpus

MiB = 1 << 20
QEMU_FMT = {"raw": "raw", "qcow2": "qcow2", "qcow2c": "qcow2", "vmdk": "vmdk", "vdi": "vdi", "ova": "vmdk"}
LABEL = {
    "raw": "raw",
    "qcow2": "qcow2",
    "qcow2c": "qcow2 -c",
    "vmdk": "vmdk stream",
    "vdi": "vdi dynamic",
    "ova": "ova (vmdk stream)",
}
SOURCES = ("raw", "qcow2", "qcow2c", "vmdk", "vdi", "ova")


@dataclass
class Result:
    case: str
    tool: str
    times: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    apparent: float = 0.0
    allocated: float = 0.0

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def child(target: str, src: str, out: str) -> None:
    """One imgpub conversion in this process; prints {"seconds", "cpu", "rss_mib"} as JSON.
    A target ending in "+check" verifies the container's digests first (an OVA's manifest).

    Like the CLI (imgpub.cli.main), the process first calls keep_freed_memory() once."""
    from imgpub.disk import open_image
    from imgpub.disk.allocator import keep_freed_memory
    from imgpub.disk.write_gce import write_gce_tar
    from imgpub.disk.write_raw import write_raw
    from imgpub.disk.write_vhd import write_vhd

    keep_freed_memory()
    start = time.perf_counter()
    cpu_start = time.process_time()
    target, _, check = target.partition("+")
    with open_image(src) as img:
        if check:
            img.check_integrity()
        if target == "raw":
            write_raw(img, Path(out))
        elif target == "vhd":
            write_vhd(img, Path(out))
        else:
            write_gce_tar(img, Path(out))
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork + exec from the (bigger) parent
    status = Path("/proc/self/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rss_mib": int(hwm.split()[1]) / 1024}))


def warm(path: Path) -> None:
    """Read the data extents of `path` once, so every tool starts from a warm page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            for off in range(start, end, 16 * MiB):
                os.pread(fd, min(16 * MiB, end - off), off)
            pos = end
    finally:
        os.close(fd)


def fresh(out: Path) -> None:
    if out.is_dir():
        shutil.rmtree(out)
    out.unlink(missing_ok=True)
    os.sync()


def run_shell(cmd: str, cwd: Path) -> tuple[float, float, float]:
    """Wall time, CPU time and peak RSS (of the largest process: GNU time's %M) of a pipeline."""
    rss_file = bench_dir() / "out" / "rss.txt"
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%U %S %M", "-o", str(rss_file), "bash", "-o", "pipefail", "-c", cmd], cwd=cwd
    )
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"baseline failed ({proc.returncode}): {cmd}")
    user, system, rss = rss_file.read_text().split()[-3:]
    return seconds, float(user) + float(system), int(rss) / 1024


def run_imgpub(target: str, src: Path, out: Path) -> tuple[float, float, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", target, str(src), str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    data = json.loads(proc.stdout)
    return data["seconds"], data["cpu"], data["rss_mib"]


Go = Callable[[], tuple[float, float, float]]


def measure(
    tools: list[tuple[Result, Go]],
    runs: int,
    out: Path,
    check: Callable[[], None] | None = None,
    *,
    interleave: bool = False,
) -> list[Result]:
    """`runs` runs of each tool of a case: all of the first tool's, then the next's (default), or in
    turns (ABAB...) with `interleave`. `check` runs (untimed) after the first tool's first run."""
    order = [k for _ in range(runs) for k in range(len(tools))] if interleave else \
        [k for k in range(len(tools)) for _ in range(runs)]  # fmt: skip
    for n, k in enumerate(order):
        result, go = tools[k]
        fresh(out)
        seconds, cpu, rss = go()
        result.times.append(seconds)
        result.cpu.append(cpu)
        result.rss.append(rss)
        target = out / "disk.tar.gz" if out.is_dir() else out
        st = target.stat()
        result.apparent, result.allocated = st.st_size / MiB, st.st_blocks * 512 / MiB
        if check is not None and n == 0:
            check()
    return [result for result, _ in tools]


def verify(src: Path, out: Path) -> None:
    """The output holds the source's guest content (same content digest), or the run is void."""
    from imgpub.disk import open_image
    from imgpub.disk.digest import content_digest

    with open_image(src) as a, open_image(out) as b:
        if content_digest(a) != content_digest(b):
            raise SystemExit(f"imgpub output {out} differs from {src}")


def cases(args: argparse.Namespace) -> list[list[Result]]:
    work = bench_dir() / "out"
    work.mkdir(exist_ok=True)
    kinds = [k for k in SOURCES if k in args.sources.split(",")]
    srcs = {k: ensure_corpus(k, args.size_gib, args.data_gib) for k in kinds}
    for path in srcs.values():
        warm(path)
    gce_dir = work / "gce-src"
    gce_dir.mkdir(exist_ok=True)
    (gce_dir / "disk.raw").unlink(missing_ok=True)
    os.link(ensure_corpus("raw", args.size_gib, args.data_gib), gce_dir / "disk.raw")  # GCE wants disk.raw
    groups: list[list[Result]] = []
    n = args.runs
    for target in [t for t in ("raw", "vhd") if t in args.targets]:
        for kind, src in srcs.items():
            case = f"{LABEL[kind]} -> {'raw' if target == 'raw' else 'fixed VHD'}"
            out = work / f"out.{target}"
            opts = "-O raw" if target == "raw" else "-O vpc -o subformat=fixed,force_size=on"
            cmd = f"qemu-img convert -W -f {QEMU_FMT[kind]} {opts} {src} {out}"
            baseline = f"`qemu-img convert -W {opts}`"
            tools: list[tuple[Result, Go]] = [
                (Result(case, "imgpub"), lambda t=target, s=src, o=out: run_imgpub(t, s, o)),
            ]
            if kind == "ova":  # read in place by imgpub; qemu-img needs the VMDK extracted first
                tmp = work / "tmp-ova"
                extract = f"rm -rf {tmp} && mkdir {tmp} && tar -xf {src} -C {tmp}"
                cmd = (
                    f"{extract} && qemu-img convert -W -f vmdk {opts} {tmp}/disk1.vmdk {out} && rm -rf {tmp}"
                )
                baseline = f"`tar -xf` + {baseline}"
                tools.append(
                    (
                        Result(case, "imgpub + SHA256 check"),
                        lambda t=target, s=src, o=out: run_imgpub(t + "+check", s, o),
                    )
                )
            tools.append((Result(case, baseline), lambda c=cmd: run_shell(c, work)))
            check = None if args.no_verify else lambda s=src, o=out: verify(s, o)
            group = measure(tools, n, out, check, interleave=args.interleave)
            groups.append(group)
            print(f"{case}: " + ", ".join(f"{r.tool} {r.median:.2f}s" for r in group), file=sys.stderr)
    for kind in [k for k in ("raw", "qcow2c", "vmdk") if k in srcs] if "gce" in args.targets else ():
        src = srcs[kind]
        case = f"{LABEL[kind]} -> GCE tar.gz"
        out = work / "out.tar.gz"
        tools = [(Result(case, "imgpub (level 1)"), lambda s=src, o=out: run_imgpub("gce", s, o))]
        pigz = f"tar --format=oldgnu -S -cf - disk.raw | pigz -1 -p 2 > {out}"
        if kind == "raw":
            if not args.quick:
                cmd = f"tar --format=oldgnu -Sczf {out} disk.raw"
                tools.append(
                    (Result(case, "`tar --format=oldgnu -Sczf`"), lambda c=cmd: run_shell(c, gce_dir))
                )
            tools.append((Result(case, "`tar -S | pigz -1 -p 2`"), lambda c=pigz: run_shell(c, gce_dir)))
        else:
            tmp = work / "tmp-raw"
            cmd = (f"rm -rf {tmp} && mkdir {tmp} && qemu-img convert -W -f {QEMU_FMT[kind]} -O raw {src} "
                   f"{tmp}/disk.raw && cd {tmp} && {pigz} && rm -rf {tmp}")  # fmt: skip
            tools.append((Result(case, "`qemu-img convert` + `tar -S | pigz -1 -p 2`"),
                          lambda c=cmd: run_shell(c, work)))  # fmt: skip
        group = measure(tools, n, out, interleave=args.interleave)
        groups.append(group)
        print(f"{case}: " + ", ".join(f"{r.tool} {r.median:.2f}s" for r in group), file=sys.stderr)
    (gce_dir / "disk.raw").unlink()
    return groups


def table(groups: list[list[Result]]) -> str:
    lines = [
        "| case | tool | median s | range s | CPU s | output MiB (apparent / allocated) | peak RSS MiB "
        "| imgpub speed-up (wall; CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for group in groups:
        ours = group[0]
        mine = [r for r in group if r.tool.startswith("imgpub")]
        for r in group:
            cpu = statistics.median(r.cpu)
            speed = (
                ""
                if r in mine
                else "; ".join(
                    f"{'' if o is ours else f'({o.tool[7:]}) '}**{r.median / o.median:.1f}x**; "
                    f"{cpu / statistics.median(o.cpu):.1f}x"
                    for o in mine
                )
            )
            if r not in mine and "pigz" in r.tool:
                speed += f" (size {ours.apparent / r.apparent:.3f}x)"
            lines.append(
                f"| {r.case} | {r.tool} | {r.median:.2f} | {min(r.times):.2f}–{max(r.times):.2f} "
                f"| {cpu:.2f} | "
                f"{r.apparent:.1f} / {r.allocated:.1f} | {max(r.rss):.0f} | {speed} |"
            )
    return "\n".join(lines)


def main() -> None:
    raw_help = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw_help)
    parser.add_argument("--size-gib", type=int, default=8)
    parser.add_argument("--data-gib", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="skip the slow `tar -Sczf` baseline")
    parser.add_argument("--targets", default="raw,vhd,gce", help="comma-separated subset of raw,vhd,gce")
    parser.add_argument("--sources", default=",".join(SOURCES), help=f"subset of {','.join(SOURCES)}")
    parser.add_argument("--interleave", action="store_true", help="alternate the tools run by run (ABAB...)")
    parser.add_argument("--no-verify", action="store_true", help="skip the content check of raw/VHD outputs")
    parser.add_argument("--child", nargs=3, metavar=("TARGET", "SRC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    groups = cases(args)
    print(f"corpus {args.size_gib} GiB virtual, {args.data_gib:g} GiB data; {args.runs} runs; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}; {started}; imgpub runs call "
          "keep_freed_memory() first, as the CLI does\n")  # fmt: skip
    print(table(groups))


if __name__ == "__main__":
    main()
