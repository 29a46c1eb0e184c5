#!/usr/bin/env bash
# Data-parallel, then expert-parallel, pre-training across two "hosts": two network namespaces joined by a veth pair
# (10.77.0.1 and 10.77.0.2), one MPI rank in each, Open MPI talking TCP over the pair; then the same run in one
# process. The losses and final weights must agree as in DistributedCLITests (1e-5). Needs root (ip netns), iproute2
# and Open MPI.
#
#   bash scripts/two_host_mpi.sh [path/to/moe]
set -euo pipefail
MOE="$(realpath "${1:-.build/release/moe}")"
WORK="$(mktemp -d)"
A=moe-host-a B=moe-host-b
cleanup() { ip netns del $A 2>/dev/null || true; ip netns del $B 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
cleanup; WORK="$(mktemp -d)"

ip netns add $A; ip netns add $B
ip link add moe-veth-a type veth peer name moe-veth-b
ip link set moe-veth-a netns $A; ip link set moe-veth-b netns $B
ip -n $A addr add 10.77.0.1/24 dev moe-veth-a; ip -n $B addr add 10.77.0.2/24 dev moe-veth-b
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set moe-veth-a up; ip -n $B link set moe-veth-b up


# mpirun starts the remote rank through its "rsh agent": this one enters the other namespace instead of ssh.
cat > "$WORK/netns-rsh" <<EOF
#!/bin/sh
host="\$1"; shift
case "\$host" in 10.77.0.2) exec ip netns exec $B sh -c "\$*" ;; *) exec sh -c "\$*" ;; esac
EOF
chmod +x "$WORK/netns-rsh"

cd "$WORK"
python3 -c "print('\n'.join('The fox %d ran to the river and back %d times.' % (i % 13, i % 7) for i in range(400)))" > data.txt
"$MOE" tokenizer train --input data.txt --vocab-size 300 --out tok --quiet >/dev/null
COMMON=(pretrain --config tiny --data "$WORK/data.txt" --tokenizer "$WORK/tok" --batch 2 --seq-len 32 --accumulation 2
        --steps 4 --eval-every 2 --checkpoint-every 4 --threads 1 --quiet)
"$MOE" "${COMMON[@]}" --out "$WORK/one" >/dev/null
for mode in data expert; do
    EXTRA=(); [[ $mode == expert ]] && EXTRA=(--expert-parallel 2)
    ip netns exec $A mpirun --allow-run-as-root --host 10.77.0.1:1,10.77.0.2:1 -np 2 \
        --mca plm_rsh_agent "$WORK/netns-rsh" --mca btl tcp,self --mca btl_tcp_if_include 10.77.0.0/24 \
        --mca oob_tcp_if_include 10.77.0.0/24 -x PATH \
        "$MOE" "${COMMON[@]}" "${EXTRA[@]}" --out "$WORK/two-$mode" 2>&1 | grep -v "^$" | tail -3

python3 - "$WORK/one" "$WORK/two-$mode" "$mode" <<'EOF'
import json, struct, sys
def losses(d): return [json.loads(l)["loss"] for l in open(d + "/metrics.jsonl")]
def tensors(d):
    raw = open(d + "/model.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]; header = json.loads(raw[8:8 + n]); out = {}
    for k, v in header.items():
        if k == "__metadata__": continue
        a, b = v["data_offsets"]; out[k] = struct.unpack("<%df" % ((b - a) // 4), raw[8 + n + a:8 + n + b])
    return out
one, two = sys.argv[1], sys.argv[2]
la, lb = losses(one), losses(two)
worst = max(abs(x - y) for x, y in zip(la, lb))
ta, tb = tensors(one), tensors(two)
rel = max(max(abs(x - y) for x, y in zip(ta[k], tb[k])) / max(max(map(abs, ta[k])), 1e-6) for k in ta)
print(f"two hosts (netns, TCP), {sys.argv[3]} parallel, vs one process: {len(la)} losses, max |diff| {worst:.2e}; weights max relative diff {rel:.2e}")
sys.exit(0 if len(la) == len(lb) == 4 and worst <= 1e-5 and rel <= 1e-5 else 1)
EOF
done
