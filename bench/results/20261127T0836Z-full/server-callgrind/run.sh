#!/bin/bash
# A worker under callgrind while a client makes 600, then 3,000 requests (a new
# connection each with "close", one keep-alive connection with "ka"): the difference
# over 2,400 is the worker's instructions per request, start-up cancelled out.
# usage: WORK=/tmp/lbcore-cg TREE=<lbcore checkout> run.sh TAG close|ka
#        then: python per_request.py TAG exc 20     (python make_configs.py first, once)
# -> $WORK/cg.TAG.{600,3000}.<pid> (the supervisor's and the worker's; the bigger is the worker)
here=$(cd "$(dirname "$0")" && pwd)
tag=$1; mode=$2; WORK=${WORK:-/tmp/lbcore-cg}; TREE=${TREE:-$(cd "$here/../../../.." && pwd)}
PY=$(python3 -c 'import sys; print(sys.executable)')  # the interpreter itself, not a shim
cd "$TREE"
nginx -p $WORK -e $WORK/error.log -c $WORK/nginx.conf -g "daemon off;" & NG=$!
for n in 600 3000; do
  rm -f $WORK/cg.$tag.$n.*
  PYTHONPATH=$TREE PYTHONHASHSEED=0 valgrind --tool=callgrind --trace-children=yes --callgrind-out-file=$WORK/cg.$tag.$n.%p $PY -m lbcore.cli serve $WORK/lbcore.yaml --workers 1 --log-level WARNING > $WORK/serve.log 2>&1 & SV=$!
  for i in $(seq 200); do curl -s -o /dev/null http://127.0.0.1:19510/ && break; sleep 0.5; done
  python $here/client.py 100 $mode >/dev/null
  python $here/client.py $n $mode
  kill -TERM $SV; wait $SV
done
kill $NG; wait $NG 2>/dev/null
ls -la $WORK/cg.$tag.*
