#!/usr/bin/python3
"""A minimal CRI (runtime.v1) client for the engine tests: no crictl on
Debian 12, so the few messages used are encoded by hand (protobuf wire
format) and sent with python3-grpcio.

usage: cri-client.py SOCKET status
       cri-client.py SOCKET pod-run HANDLER SANDBOX_IMAGE IMAGE CGROUP_PARENT CMD...
           runs a host-network pod with the runtime handler, creates and
           starts one container running CMD, prints "pod ID" and "ctr ID"
       cri-client.py SOCKET exec CTR_ID CMD...    ExecSync: prints stdout, exits with its code
       cri-client.py SOCKET ctr-status CTR_ID     prints the container's state name
       cri-client.py SOCKET pod-rm POD_ID CTR_ID  stops and removes both
"""
import json
import sys

import grpc

SVC = "/runtime.v1.RuntimeService/"


# --- protobuf wire format --------------------------------------------------
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def f_bytes(num, data):
    if isinstance(data, str):
        data = data.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def f_int(num, n):
    return varint(num << 3 | 0) + varint(n)


def decode(buf):
    """Returns {field: [values]}; length-delimited values stay bytes."""
    out, i = {}, 0
    while i < len(buf):
        key, i = read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = read_varint(buf, i)
        elif wt == 2:
            ln, i = read_varint(buf, i)
            val, i = buf[i : i + ln], i + ln
        elif wt == 1:
            val, i = buf[i : i + 8], i + 8
        elif wt == 5:
            val, i = buf[i : i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        out.setdefault(num, []).append(val)
    return out


def read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


# --- calls -----------------------------------------------------------------
def call(chan, method, req, timeout=60):
    fn = chan.unary_unary(SVC + method, request_serializer=None, response_deserializer=None)
    return fn(req, timeout=timeout)


def sandbox_config(cgroup_parent):
    meta = f_bytes(1, "brig-pod") + f_bytes(2, "brig-pod-uid") + f_bytes(3, "default")
    ns = f_int(1, 2) + f_int(2, 1) + f_int(3, 1)  # network NODE, pid/ipc POD
    sec = f_bytes(1, ns)
    linux = f_bytes(1, cgroup_parent) + f_bytes(2, sec)
    # no hostname: a host-network pod shares the host UTS namespace (as kubelet does)
    return f_bytes(1, meta) + f_bytes(8, linux)


def main():
    sock, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    chan = grpc.insecure_channel("unix://" + sock)
    if cmd == "status":
        v = decode(call(chan, "Version", f_bytes(1, "v1")))
        print("version", v[2][0].decode(), v[3][0].decode(), v[4][0].decode())
        st = decode(call(chan, "Status", f_int(1, 1)))
        info = {}
        for entry in st.get(2, []):
            e = decode(entry)
            info[e[1][0].decode()] = e[2][0].decode()
        print("config", json.dumps(json.loads(info["config"])))
    elif cmd == "pod-run":
        handler, sandbox_image, image, cgparent = args[:4]
        command = args[4:]
        sb = sandbox_config(cgparent)
        r = decode(call(chan, "RunPodSandbox", f_bytes(1, sb) + f_bytes(2, handler), timeout=120))
        pod = r[1][0].decode()
        print("pod", pod, flush=True)
        cfg = f_bytes(1, f_bytes(1, "brig-ctr")) + f_bytes(2, f_bytes(1, image))
        for c in command:
            cfg += f_bytes(3, c)
        r = decode(call(chan, "CreateContainer", f_bytes(1, pod) + f_bytes(2, cfg) + f_bytes(3, sb)))
        ctr = r[1][0].decode()
        print("ctr", ctr, flush=True)
        call(chan, "StartContainer", f_bytes(1, ctr))
    elif cmd == "exec":
        req = f_bytes(1, args[0])
        for c in args[1:]:
            req += f_bytes(2, c)
        req += f_int(3, 30)
        r = decode(call(chan, "ExecSync", req))
        sys.stdout.write(r.get(1, [b""])[0].decode())
        sys.stderr.write(r.get(2, [b""])[0].decode())
        sys.exit(r.get(3, [0])[0])
    elif cmd == "ctr-status":
        r = decode(call(chan, "ContainerStatus", f_bytes(1, args[0])))
        status = decode(r[1][0])
        print(["CREATED", "RUNNING", "EXITED", "UNKNOWN"][status.get(3, [0])[0]])
    elif cmd == "pod-rm":
        pod, ctr = args
        if ctr:
            call(chan, "StopContainer", f_bytes(1, ctr) + f_int(2, 2))
            call(chan, "RemoveContainer", f_bytes(1, ctr))
        call(chan, "StopPodSandbox", f_bytes(1, pod))
        call(chan, "RemovePodSandbox", f_bytes(1, pod))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as e:
        print("rpc error: %s: %s" % (e.code(), e.details()), file=sys.stderr)
        sys.exit(2)
