"""Print one corpus case in full from results_<requests|responses>.json: what each peer sent the client and each backend connection received.
Usage: /work/main/.venv/bin/python repro/show_case.py requests C07 D04"""
import json, sys
prefix = sys.argv[1]; ids = sys.argv[2:]
names = ["mpm", "nginx", "haproxy"]
import os
R = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), f"results_{prefix}.json")))
for cid in ids:
    print("=====", cid, R["mpm"][cid]["what"])
    for n in names:
        x = R[n][cid]
        print(f"  --- {n}: status {x['status']} closed={x['closed']}")
        for k, v in x["backend"].items():
            print("     backend conn", k, repr(v.encode('latin-1'))[:700])
        if prefix == "responses":
            print("     client got:", repr(x["resp"].encode('latin-1'))[:900])
