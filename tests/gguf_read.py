"""gguf_read.py — a GGUF v3 file's header as the tests read it on their own
(not through the project's parser): every metadata key and value, the
tensor table, and the start of the data section."""
import struct


def read_gguf(path, head_bytes=64 << 20):
    """({key: value}, data offset, alignment, {name: (ne, type, offset)})."""
    with open(path, "rb") as f:
        buf = f.read(head_bytes)
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0] if len(v) == 1 else v

    def string():
        nonlocal pos
        n = take("Q")
        s = buf[pos:pos + n].decode()
        pos += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            at, n = take("I"), take("Q")
            return [value(at) for _ in range(n)]
        return take(scalar[t])

    assert buf[:4] == b"GGUF", "not a GGUF file"
    pos = 4
    version, n_t, n_kv = take("I"), take("Q"), take("Q")
    assert version == 3
    kv = {}
    for _ in range(n_kv):
        k = string()
        kv[k] = value(take("I"))
    align = kv.get("general.alignment", 32)
    tensors = {}
    for _ in range(n_t):
        name = string()
        nd = take("I")
        ne = [take("Q") for _ in range(nd)]
        typ, off = take("I"), take("Q")
        tensors[name] = (ne, typ, off)
    data = (pos + align - 1) // align * align
    return kv, data, align, tensors
