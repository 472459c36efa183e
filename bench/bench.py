#!/usr/bin/env python3
"""brig against runc and crun, side by side in one run.

Every measurement alternates the runtimes (brig, runc, crun, brig, runc, ...)
so that drift on a shared machine hits them alike; ratios are taken pair by
pair and reported as medians. Run through bench/run.sh, which installs the
runtimes, builds brig in release mode and hides this host's cgroup2 mount from
crun (crun 1.8 refuses hybrid cgroups) for all three runtimes alike.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RUNTIMES = ["brig", "runc", "crun"]
# perf's cpu-clock sampling period in ns for the CPU rows.
SAMPLE_NS = 50_000


def sh(args, check=True, **kw):
    return subprocess.run(args, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def timed(args):
    """Runs a command; returns (wall seconds, user+sys CPU seconds, max RSS KiB, status)."""
    # stderr goes to a file: a container keeps the runtime's stdio open, so
    # a pipe would not reach end-of-file while the container lives.
    with tempfile.TemporaryFile() as errf:
        t0 = time.perf_counter()
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=errf)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        errf.seek(0)
        err = errf.read().decode(errors="replace")
    return wall, ru.ru_utime, ru.ru_stime, ru.ru_maxrss, p.returncode, err


class Bench:
    def __init__(self, bins, work, iterations):
        self.bins = bins
        self.work = Path(work)
        self.n = iterations
        self.rootfs = self.work / "rootfs"
        self.counter = 0
        self.make_rootfs()

    def make_rootfs(self):
        (self.rootfs / "bin").mkdir(parents=True, exist_ok=True)
        shutil.copy("/bin/busybox", self.rootfs / "bin/busybox")
        out = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout
        for applet in out.split():
            if applet != "busybox" and not (self.rootfs / "bin" / applet).exists():
                os.symlink("busybox", self.rootfs / "bin" / applet)
        for d in ["proc", "sys", "dev", "tmp", "etc"]:
            (self.rootfs / d).mkdir(exist_ok=True)

    def bundle(self, rt, args, memory=None):
        """A bundle for `rt` from brig's default spec, the same for every runtime."""
        self.counter += 1
        b = self.work / f"b-{rt}-{self.counter}"
        b.mkdir()
        sh([self.bins["brig"], "spec", "--bundle", str(b)])
        cfg = json.loads((b / "config.json").read_text())
        # crun 1.8 knows runtime-spec versions up to 1.1.
        cfg["ociVersion"] = "1.0.2"
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = args
        cfg["root"] = {"path": str(self.rootfs), "readonly": True}
        # An explicit cgroup for every runtime (runc would otherwise nest it
        # under the caller's own cgroup); containers running at the same time
        # get bundles of their own, hence cgroups of their own.
        cfg["linux"]["cgroupsPath"] = f"/brig-bench/{rt}-{self.counter}"
        if memory is not None:
            cfg["linux"]["resources"]["memory"] = {"limit": memory, "swap": memory}
        (b / "config.json").write_text(json.dumps(cfg))
        return b

    def cmd(self, rt, *args):
        root = self.work / f"state-{rt}"
        return [self.bins[rt], "--root", str(root), *args]

    def cid(self, rt):
        self.counter += 1
        return f"bench-{rt}-{os.getpid()}-{self.counter}"

    # --- measurements -----------------------------------------------------

    def run_true(self):
        res = {rt: [] for rt in RUNTIMES}
        bundles = {rt: self.bundle(rt, ["/bin/true"]) for rt in RUNTIMES}
        for _ in range(self.n):
            for rt in RUNTIMES:
                cid = self.cid(rt)
                r = timed(self.cmd(rt, "run", "--bundle", str(bundles[rt]), cid))
                if r[4] != 0:
                    raise SystemExit(f"{rt} run failed: {r[5]}")
                res[rt].append(r)
        return res

    def phases(self):
        """create, start and delete timed separately (as containerd calls them)."""
        res = {rt: {"create": [], "start": [], "delete": []} for rt in RUNTIMES}
        bundles = {rt: self.bundle(rt, ["/bin/true"]) for rt in RUNTIMES}
        for _ in range(self.n):
            for rt in RUNTIMES:
                cid = self.cid(rt)
                c = timed(self.cmd(rt, "create", "--bundle", str(bundles[rt]), cid))
                s = timed(self.cmd(rt, "start", cid))
                wait_stopped(self, rt, cid)
                d = timed(self.cmd(rt, "delete", cid))
                for name, r in [("create", c), ("start", s), ("delete", d)]:
                    if r[4] != 0:
                        raise SystemExit(f"{rt} {name} failed: {r[5]}")
                    res[rt][name].append(r)
        return res

    def peak_rss(self):
        """Peak RSS of `create`, from GNU time: the runtime's own high-water
        mark (a fork of Python would report Python's). GNU time's own floor
        is reported too."""
        res = {rt: [] for rt in RUNTIMES}
        bundles = {rt: self.bundle(rt, ["/bin/true"]) for rt in RUNTIMES}
        out = self.work / "rss"
        for _ in range(max(3, self.n // 3)):
            for rt in RUNTIMES:
                cid = self.cid(rt)
                sh(["/usr/bin/time", "-f", "%M", "-o", str(out)] + self.cmd(rt, "create", "--bundle", str(bundles[rt]), cid))
                res[rt].append(int(out.read_text().split()[-1]))
                sh(self.cmd(rt, "delete", "--force", cid), check=False)
        sh(["/usr/bin/time", "-f", "%M", "-o", str(out), "/bin/true"])
        floor = int(out.read_text().split()[-1])
        return res, floor

    def exec_true(self):
        res = {rt: [] for rt in RUNTIMES}
        ids = {}
        for rt in RUNTIMES:
            b = self.bundle(rt, ["sleep", "3600"])
            ids[rt] = self.cid(rt)
            sh(self.cmd(rt, "run", "--detach", "--bundle", str(b), ids[rt]))
        try:
            for _ in range(self.n):
                for rt in RUNTIMES:
                    r = timed(self.cmd(rt, "exec", ids[rt], "/bin/true"))
                    if r[4] != 0:
                        raise SystemExit(f"{rt} exec failed: {r[5]}")
                    res[rt].append(r)
        finally:
            for rt in RUNTIMES:
                sh(self.cmd(rt, "delete", "--force", ids[rt]), check=False)
        return res

    def parallel(self, count):
        """count containers created and started at once, then deleted."""
        res = {}
        for rt in RUNTIMES:
            ids = [self.cid(rt) for _ in range(count)]
            bundles = [self.bundle(rt, ["sleep", "3600"]) for _ in ids]
            peak = [0]
            base = mem_used()
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    peak[0] = max(peak[0], mem_used() - base)
                    time.sleep(0.005)

            t = threading.Thread(target=sample)
            t.start()
            t0 = time.perf_counter()
            procs = [subprocess.Popen(self.cmd(rt, "run", "--detach", "--bundle", str(b), i),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for b, i in zip(bundles, ids)]
            failed = sum(1 for p in procs if p.wait() != 0)
            up = time.perf_counter() - t0
            dels = [subprocess.Popen(self.cmd(rt, "delete", "--force", i),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in ids]
            for p in dels:
                p.wait()
            total = time.perf_counter() - t0
            stop.set()
            t.join()
            res[rt] = {"up": up, "total": total, "failed": failed, "peak_mem_kib": peak[0]}
        return res

    def min_memory(self):
        """The smallest memory limit (with equal swap) under which run /bin/true succeeds."""
        res = {}
        for rt in RUNTIMES:
            lo, hi = 64 * 1024, 64 * 1024 * 1024
            # Warm the page cache so the binaries' pages are not charged.
            self.try_limit(rt, None)
            if not self.try_limit(rt, hi):
                res[rt] = None
                continue
            while hi - lo > 16 * 1024:
                mid = (lo + hi) // 2 // 4096 * 4096
                if self.try_limit(rt, mid) and self.try_limit(rt, mid):
                    hi = mid
                else:
                    lo = mid
            res[rt] = hi
        return res

    def try_limit(self, rt, limit):
        b = self.bundle(rt, ["/bin/true"], memory=limit)
        cid = self.cid(rt)
        r = timed(self.cmd(rt, "run", "--bundle", str(b), cid))
        sh(self.cmd(rt, "delete", "--force", cid), check=False)
        shutil.rmtree(b, ignore_errors=True)
        return r[4] == 0

    def sampled_cpu(self, blocks=5):
        """User and kernel CPU per container of `run /bin/true`, from perf's
        cpu-clock sampling (one sample per 50 us of CPU) of the runtime's own
        processes; the container's /bin/true and the loop's shell are left
        out. rusage cannot tell user from kernel time here: with tick-based
        accounting (HZ=250) a process that never met a tick in kernel mode
        has all its runtime booked as user time. Returns per-block values,
        alternating runtimes block by block, or None without a working perf."""
        perf = shutil.which("perf")
        if perf is None or sh([perf, "stat", "-e", "cpu-clock", "true"], check=False).returncode != 0:
            return None
        per_block = max(5, self.n // 3)
        res = {rt: {"user": [], "kernel": [], "failed": 0} for rt in RUNTIMES}
        data = self.work / "perf.data"
        failures = self.work / "perf.failures"
        for _ in range(blocks):
            for rt in RUNTIMES:
                # A bundle (so a cgroup) per run, as in the parallel test.
                runs = [(self.bundle(rt, ["/bin/true"]), self.cid(rt)) for _ in range(per_block)]
                loop = "; ".join(" ".join(self.cmd(rt, "run", "--bundle", str(b), i)) +
                                 f" >/dev/null || echo x >>{failures}" for b, i in runs)
                failures.unlink(missing_ok=True)
                sh([perf, "record", "-q", "-e", "cpu-clock", "-c", str(SAMPLE_NS), "-o", str(data),
                    "--", "sh", "-c", loop])
                if failures.exists():
                    res[rt]["failed"] += len(failures.read_text().split())
                out = subprocess.run([perf, "script", "-i", str(data), "-F", "comm,ip,dso"],
                                     capture_output=True, text=True).stdout
                user = kernel = 0
                for line in out.splitlines():
                    if not line.strip().startswith(rt):
                        continue
                    if "[kernel" in line:
                        kernel += 1
                    else:
                        user += 1
                res[rt]["user"].append(user * SAMPLE_NS / 1e9 / per_block)
                res[rt]["kernel"].append(kernel * SAMPLE_NS / 1e9 / per_block)
        data.unlink(missing_ok=True)
        return res

    def startup(self):
        res = {rt: [] for rt in RUNTIMES}
        for _ in range(self.n * 3):
            for rt in RUNTIMES:
                res[rt].append(timed(self.cmd(rt, "state", "no-such-container")))
        return res


def wait_stopped(bench, rt, cid):
    for _ in range(2000):
        out = subprocess.run(bench.cmd(rt, "state", cid), capture_output=True, text=True).stdout
        if '"stopped"' in out:
            return
        time.sleep(0.001)


def mem_used():
    info = {}
    for line in open("/proc/meminfo"):
        k, v = line.split(":")
        info[k] = int(v.split()[0])
    return info["MemTotal"] - info["MemAvailable"]


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def ratios(a, b):
    """Pairwise ratios of alternating runs, summarised by their median."""
    return med([x / y for x, y in zip(a, b) if y > 0])


def ms(x):
    return f"{x * 1000:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brig", required=True)
    ap.add_argument("--runc", default=shutil.which("runc"))
    ap.add_argument("--crun", default=shutil.which("crun"))
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--parallel", type=int, default=50)
    ap.add_argument("--out", default="bench/RESULTS.md")
    ap.add_argument("--skip-memory", action="store_true")
    o = ap.parse_args()
    bins = {"brig": o.brig, "runc": o.runc, "crun": o.crun}
    work = tempfile.mkdtemp(prefix="brig-bench-")
    try:
        b = Bench(bins, work, o.iterations)
        run = b.run_true()
        ph = b.phases()
        ex = b.exec_true()
        rss, rss_floor = b.peak_rss()
        par = b.parallel(o.parallel)
        mem = {rt: None for rt in RUNTIMES} if o.skip_memory else b.min_memory()
        st = b.startup()
        sampled = b.sampled_cpu(blocks=2 if o.iterations < 10 else 5)
    finally:
        for rt in RUNTIMES:
            state = Path(work) / f"state-{rt}"
            if state.exists():
                for c in os.listdir(state):
                    subprocess.run([bins[rt], "--root", str(state), "delete", "--force", c],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
        # Containers' cgroups are gone with delete; their parent stays.
        # (Under the tmpfs that hides cgroup2, runtimes may have made plain
        # directories; they vanish with this mount namespace.)
        for h in Path("/sys/fs/cgroup").iterdir():
            d = h / "brig-bench"
            for sub in sorted(d.glob("*"), reverse=True) if d.is_dir() else []:
                try:
                    sub.rmdir()
                except OSError:
                    pass
            try:
                d.rmdir()
            except OSError:
                pass

    def walls(rs):
        return [r[0] for r in rs]

    def cpu(rs):
        return [r[1] + r[2] for r in rs]

    lines = []
    w = lines.append
    w("# brig vs runc vs crun\n")
    w(f"Machine: {os.uname().release}, {os.cpu_count()} cores; "
      f"{o.iterations} alternating iterations per row; times are medians in ms; "
      "ratios are medians of pairwise ratios (brig/runc, brig/crun) from the same iteration.\n")
    vers = {rt: subprocess.run([bins[rt], "--version"], capture_output=True, text=True).stdout.splitlines()[0]
            for rt in RUNTIMES}
    w("Versions: " + "; ".join(vers[rt] for rt in RUNTIMES) + "\n")
    w("| measure | brig | runc | crun | brig/runc | brig/crun |")
    w("| --- | --- | --- | --- | --- | --- |")

    def row(name, data, f=walls, fmt=ms):
        vals = {rt: f(data[rt]) for rt in RUNTIMES}
        w(f"| {name} | {fmt(med(vals['brig']))} | {fmt(med(vals['runc']))} | {fmt(med(vals['crun']))} | "
          f"{ratios(vals['brig'], vals['runc']):.2f} | {ratios(vals['brig'], vals['crun']):.2f} |")

    row("run /bin/true (wall)", run)
    row("run /bin/true (user+sys CPU, rusage)", run, cpu)
    if sampled is None:
        w("| run /bin/true, runtime CPU by sampling | perf not working here | | | | |")
    else:
        row("run /bin/true, runtime user CPU (perf sampling)", {rt: sampled[rt]["user"] for rt in RUNTIMES},
            lambda xs: xs)
        row("run /bin/true, runtime kernel CPU (perf sampling)", {rt: sampled[rt]["kernel"] for rt in RUNTIMES},
            lambda xs: xs)
        if any(sampled[rt]["failed"] for rt in RUNTIMES):
            w("| runs that failed while sampled | " + " | ".join(str(sampled[rt]["failed"]) for rt in RUNTIMES) +
              " | | |")
    for phase in ["create", "start", "delete"]:
        row(f"{phase} (wall)", {rt: ph[rt][phase] for rt in RUNTIMES})
    row("exec /bin/true (wall)", ex)
    row(f"peak RSS of create, KiB (GNU time; its own floor: {rss_floor})", rss,
        lambda rs: rs, lambda x: f"{x:.0f}")
    row("state of a missing id (start-up cost)", st)
    w(f"| {o.parallel} in parallel: up (ms) | " + " | ".join(f"{par[rt]['up'] * 1000:.0f}" for rt in RUNTIMES) +
      f" | {par['brig']['up'] / par['runc']['up']:.2f} | {par['brig']['up'] / par['crun']['up']:.2f} |")
    w(f"| {o.parallel} in parallel: up + delete (ms) | " +
      " | ".join(f"{par[rt]['total'] * 1000:.0f}" for rt in RUNTIMES) +
      f" | {par['brig']['total'] / par['runc']['total']:.2f} | {par['brig']['total'] / par['crun']['total']:.2f} |")
    w(f"| {o.parallel} in parallel: failures | " + " | ".join(str(par[rt]["failed"]) for rt in RUNTIMES) + " | | |")
    w(f"| {o.parallel} in parallel: peak host memory (KiB) | " +
      " | ".join(str(par[rt]["peak_mem_kib"]) for rt in RUNTIMES) + " | | |")
    w("| smallest memory limit for run /bin/true (KiB) | " +
      " | ".join("n/a" if mem[rt] is None else str(mem[rt] // 1024) for rt in RUNTIMES) + " | | |")
    sizes = {}
    for rt in RUNTIMES:
        stripped = Path(work + "-size")
        shutil.copy(bins[rt], stripped)
        subprocess.run(["strip", str(stripped)], check=False)
        sizes[rt] = stripped.stat().st_size // 1024
        stripped.unlink()
    w("| binary size, stripped (KiB) | " + " | ".join(str(sizes[rt]) for rt in RUNTIMES) +
      f" | {sizes['brig'] / sizes['runc']:.2f} | {sizes['brig'] / sizes['crun']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(o.out).write_text(text)
    return 1 if par["brig"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
