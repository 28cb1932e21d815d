"""Run a command; write "EXIT_CODE PEAK_RSS_KIB" to the file named by argv[1]; exit like the command.

A small process between the test worker and the command: a child forked from a worker that holds torch
would inherit its resident pages, and the kernel keeps that high-water mark across exec, so the
command's own peak is only measurable from a parent that is small.
"""

import os
import subprocess
import sys
from pathlib import Path

proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
code = os.waitstatus_to_exitcode(status)
Path(sys.argv[1]).write_text(f"{code} {usage.ru_maxrss}")
sys.exit(code if code >= 0 else 128 - code)
