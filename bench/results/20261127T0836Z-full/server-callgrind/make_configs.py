"""The worker's Spec (the bench's, 3 ACLs, syslog access log to a port nobody reads)
and the nginx backend's configuration, written into $WORK."""
import os
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
from bench.configs import Frontend, lbcore_spec, backend_nginx_conf
wd = Path(os.environ.get("WORK", "/tmp/lbcore-cg"))
wd.mkdir(parents=True, exist_ok=True)
sink = 19514
fe = Frontend(port=19510, backend_port=19511, acls=3, access_log_port=sink, admin_port=19512)
(wd / "lbcore.yaml").write_text(yaml.safe_dump(lbcore_spec(fe), sort_keys=False))
(wd / "nginx.conf").write_text(backend_nginx_conf(19511, wd))
