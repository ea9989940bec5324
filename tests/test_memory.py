"""Frame-sized buffers go back to the operating system when freed (sg3stream/memory.py)."""
import subprocess
import sys

SCRIPT = """
import threading, numpy as np
from sg3stream.memory import keep_large_buffers_returnable
if {fixed}:
    assert keep_large_buffers_returnable()

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

def churn():  # pictures made and freed by several threads, a few kept, as the pipeline's stages do
    kept = []
    for i in range(60):
        frame = np.ones((1080, 1920, 3), np.uint8)
        small = np.ones(100_000 + i, np.uint8)  # small blocks between them pin the heap's top
        kept.append(small)
        del frame

np.ones((1080, 1920, 3), np.uint8)  # the first large free raises glibc's sliding threshold
threads = [threading.Thread(target=churn) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
print(rss_mb())
"""


def rss_after_churn(fixed: bool) -> float:
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(fixed=fixed)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return float(done.stdout.strip())


def test_frames_freed_by_many_threads_do_not_stay_in_the_process():
    assert rss_after_churn(fixed=True) < rss_after_churn(fixed=False)
    assert rss_after_churn(fixed=True) < 200  # numpy and the small blocks: the 6 MB pictures are gone
