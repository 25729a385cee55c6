#!/usr/bin/env python3
"""Compares returned routed experts with the rows of a moe-worker --trace
(tests/routed_test.sh).  Standard library only.

  routed_check.py http ANSWER.json TRACE       a whole answer, or an SSE stream
  routed_check.py client LINES TRACE           moe-client --routed-experts lines

The trace has the rows of request 0 only (a batch of one request); every
(position, layer) row of the answer must be in it with the same experts
and, when the answer has weights, the same float32 weights; and the answer
must have every row of the trace."""
import base64
import json
import struct
import sys


def f32(x):
    return struct.unpack('<f', struct.pack('<f', x))[0]


def read_trace(path):
    rows = {}
    for line in open(path):
        layer, req, pos, home, ids, ws, ranks = line.split()
        if req != '0':
            sys.exit('trace: request %s: the batch should have one request' % req)
        rows[(int(pos), int(layer))] = ([int(v) for v in ids.split(',')], [f32(float(v)) for v in ws.split(',')])
    return rows


def answer_of(path):
    text = open(path).read()
    if text.startswith('data: '):  # a stream: the routed experts are in the choice's last chunk
        found = None
        for line in text.splitlines():
            if line.startswith('data: ') and line != 'data: [DONE]':
                for ch in json.loads(line[6:]).get('choices', []):
                    if 'routed_experts' in ch:
                        if found is not None:
                            sys.exit('the stream has routed_experts in more than one chunk')
                        if ch.get('finish_reason') is None:
                            sys.exit('routed_experts in a chunk that is not the last')
                        found = ch
        if found is None:
            sys.exit('no routed_experts in the stream')
        return found
    return json.loads(text)['choices'][0]


def decode(obj, fmt, size):
    shape = obj['shape']
    raw = base64.b64decode(obj['data'], validate=True)
    n = shape[0] * shape[1] * shape[2]
    if len(raw) != n * size:
        sys.exit('%s: %d bytes for shape %s' % (obj['dtype'], len(raw), shape))
    return shape, struct.unpack('<%d%s' % (n, fmt), raw)


def check(got, trace):
    if set(got) != set(trace):
        missing = sorted(set(trace) - set(got))[:5]
        extra = sorted(set(got) - set(trace))[:5]
        sys.exit('rows differ: %d returned, %d traced; missing %s, extra %s' % (len(got), len(trace), missing, extra))
    for key in sorted(got):
        ids, ws = got[key]
        if ids != trace[key][0]:
            sys.exit('position %d layer %d: experts %s returned, %s traced' % (key + (ids, trace[key][0])))
        if ws is not None and ws != trace[key][1]:
            sys.exit('position %d layer %d: weights %s returned, %s traced' % (key + (ws, trace[key][1])))


def main():
    kind, path, trace_path = sys.argv[1:4]
    trace = read_trace(trace_path)
    got = {}
    weights = False
    if kind == 'http':
        ch = answer_of(path)
        shape, ids = decode(ch['routed_experts'], 'h', 2)
        if ch['routed_experts']['dtype'] != 'int16':
            sys.exit('dtype %s' % ch['routed_experts']['dtype'])
        ws = None
        if 'routed_expert_weights' in ch:
            wshape, ws = decode(ch['routed_expert_weights'], 'f', 4)
            if wshape != shape:
                sys.exit('weights shape %s, ids %s' % (wshape, shape))
            weights = True
        T, L, K = shape
        first = ch['routed_experts']['first_moe_layer']
        for t in range(T):
            for l in range(L):
                at = (t * L + l) * K
                got[(t, first + l)] = (list(ids[at:at + K]), list(ws[at:at + K]) if ws else None)
    else:
        for line in open(path):
            f = line.split()
            if f[0] != '1':
                sys.exit('client line %s' % f[0])
            got[(int(f[1]), int(f[2]))] = ([int(v) for v in f[3].split(',')],
                                           [f32(float(v)) for v in f[4].split(',')] if len(f) > 4 else None)
            weights = len(f) > 4
    check(got, trace)
    print('%d rows (position x MoE layer) equal to the trace%s' % (len(got), ', weights too' if weights else ''))


main()
