"""The symbols and adaptive-model constants of the row-transition group-map coder, shared by the
coder (:mod:`ssc.bitstream.groupmap_rows`) and its compiled walk (:mod:`ssc.bitstream.groupmap_plan`)."""
V_RANGE = 3
SKIP, NEW, END = 2 * V_RANGE + 1, 2 * V_RANGE + 2, 2 * V_RANGE + 3
NUM_MODES = END + 1
CTX_NEW, CTX_NONE = 2 * V_RANGE + 1, 2 * V_RANGE + 2
NUM_CTX = CTX_NONE + 1
MAX_BITS = 33
INC, LIMIT = 24.0, float(1 << 15)
