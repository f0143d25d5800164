"""One literal field whose value is ~1 MiB of Huffman code: one field, so blockcount.fields_over
lets it through, and hpack Huffman-decodes all of it before it compares the list size with
SETTINGS_MAX_HEADER_LIST_SIZE (64 KiB)."""
import sys, time; sys.path.insert(0, ".")
import hpack
from hpack.hpack import encode_integer
from worker.h2.blockcount import fields_over, CRUMBS_AND_PSEUDO
value = b"\x00" * ((1 << 20) - 64)          # Huffman: 0x00 bytes decode as '0' (5-bit code 00000)
length = bytes(encode_integer(len(value), 7)); length = bytes([length[0] | 0x80]) + length[1:]
block = b"\x00\x01x" + length + value        # literal without indexing, new name "x", Huffman value
t = time.process_time(); over = fields_over(block, 100 + CRUMBS_AND_PSEUDO); t1 = time.process_time() - t
d = hpack.Decoder(); d.max_header_list_size = 65536
t = time.process_time()
try:
    r = d.decode(block, raw=True)
except Exception as e:
    r = f"{type(e).__name__}: {str(e)[:80]}"
t2 = time.process_time() - t
print(f"block {len(block)} bytes: fields_over={over} ({t1*1000:.2f} ms); decode -> {r} ({t2*1000:.0f} ms)")
