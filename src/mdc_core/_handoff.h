/* The GIL handoff between the flusher's native file writes (_durable.c) and collect() (_hotpath.c).
 *
 * CPython gives the GIL back to a thread that released it only when the holder lets go, at the
 * latest after the switch interval (5 ms). Scoring threads collecting in a closed loop never let
 * go, so every blocking call of the flusher can cost it 5 ms, and with 16 such threads far more.
 * A native write, once its system calls are done and before it waits for the GIL, raises
 * `waiting`; collect() sees it, steps aside for at most HANDOFF_MAX_WAIT_NS and lets the writer
 * take the GIL. Never while storage is slow: `waiting` is raised only after the write returned.
 *
 * _hotpath owns the struct and exports it as the capsule HANDOFF_CAPSULE; _durable imports it. */
#ifndef MDC_HANDOFF_H
#define MDC_HANDOFF_H

#include <stdatomic.h>

#define HANDOFF_CAPSULE "mdc_core._hotpath._handoff_v1"
#define HANDOFF_MAX_WAIT_NS 5000000LL /* one default switch interval: never longer than the GIL would */

typedef struct {
    atomic_int waiting; /* threads done with their system calls, now waiting for the GIL */
} mdc_handoff;

#endif
