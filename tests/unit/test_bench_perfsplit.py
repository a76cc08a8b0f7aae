"""bench.perfsplit: reading what perf, strace and wrk print."""

from __future__ import annotations

import pytest

from bench.perfsplit import parse_perf_report, parse_strace, requests_of

PERF_DSO = """\
# To display the perf.data header info, please use --header/--header-only options.
#
# Samples: 7K of event 'cpu-clock:ppp'
#
# Overhead       Samples  Shared Object
# ........  ............  ..............................
#
    48.71%          3880  [kernel.kallsyms]
    39.40%          3139  libpython3.11.so.1.0
     6.15%           490  loop.cpython-311-x86_64-linux-gnu.so
     0.01%             1  [vdso]


#
# (Cannot load tips.txt file, please install perf!)
#
"""

PERF_SYM = """\
# Overhead       Samples  Symbol
    13.11%          1044  [k] _raw_spin_unlock_irqrestore
     0.94%            75  [k] tcp_ack
     0.05%             4  [.] _PyEval_EvalFrameDefault
"""

STRACE = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 45.10    0.120000          16      7539           write
 30.00    0.080000          10      7541         3 read
  0.01    0.000010          10         1           epoll_ctl
------ ----------- ----------- --------- --------- ----------------
100.00    0.200010          13     15081         3 total
"""


def test_perf_report_samples_by_key() -> None:
    assert parse_perf_report(PERF_DSO) == {
        "[kernel.kallsyms]": 3880, "libpython3.11.so.1.0": 3139, "loop.cpython-311-x86_64-linux-gnu.so": 490, "[vdso]": 1,
    }
    assert parse_perf_report(PERF_SYM) == {"_raw_spin_unlock_irqrestore": 1044, "tcp_ack": 75,
                                           "_PyEval_EvalFrameDefault": 4}
    assert parse_perf_report("") == {}


def test_strace_calls_by_syscall_without_the_total() -> None:
    assert parse_strace(STRACE) == {"write": 7539, "read": 7541, "epoll_ctl": 1}


def test_requests_from_the_lua_scripts_json_or_wrk_summary() -> None:
    assert requests_of('Running 4s test\nBENCH_JSON {"requests":27077,"duration_us":1}\n') == 27077
    assert requests_of("  101093 requests in 4.00s, 15.10MB read\n") == 101093
    with pytest.raises(ValueError, match="no request count"):
        requests_of("unable to connect to 127.0.0.1:1 Connection refused\n")
