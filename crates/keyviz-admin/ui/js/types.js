// @ts-check
/**
 * Shared JSDoc types for the wire format and the view state. This module exports nothing at
 * run time; other modules import the typedefs with `import('./types.js').Name`.
 */

/** @typedef {'reads'|'writes'|'read_bytes'|'write_bytes'} Series */
/** @typedef {Series|'leader_reads'|'follower_reads'} WireSeries the matrix API also has the read roles */
/**
 * `auto` fits the window to the data (the data's age rounded up to a preset, at most the
 * default hour); `span` is "the last `span` ms", what Live keeps from a zoomed window.
 * @typedef {'auto'|'5m'|'15m'|'1h'|'6h'|'24h'|'7d'|'custom'|'span'} RangePreset
 */
/** @typedef {'linear'|'log'} ScaleKind */
/** @typedef {'heat'|'viridis'} PaletteName */

/**
 * One row of GET /admin/api/v1/keyviz/matrix. `values`, `conflicts`, `raft_group_ids` and
 * `leader_terms` are parallel to the matrix's `column_unix_ms`.
 * @typedef {object} MatrixRow
 * @property {string} bucket_id
 * @property {string} [label]
 * @property {string|null} start base64 of the raw start key; null = empty key
 * @property {string|null} end base64 of the raw end key; null = unbounded
 * @property {boolean} aggregate
 * @property {number[]} [route_ids]
 * @property {boolean} [route_ids_truncated]
 * @property {number} route_count
 * @property {number[]} values
 * @property {boolean} [conflict]
 * @property {boolean[]} [conflicts]
 * @property {number[]} [raft_group_ids]
 * @property {number[]} [leader_terms]
 * @property {string} [preview]
 * @property {string|null} [first_key] base64 of the smallest key observed in the row (a real
 *   key, unlike `start`); absent when none was observed
 * @property {string|null} [last_key] base64 of the largest key observed in the row
 * @property {boolean} [layout_only] UI only: the row has no traffic in this series and is
 *   drawn (all zero) because another series of the view has it, so rows keep their places
 * @property {number[]} [leader_values] UI only, reads: per column, the reads the leader
 *   served (the rest of `values` were served by followers)
 */

/**
 * @typedef {object} FanoutWarning
 * @property {string} code
 * @property {string} [bucket_id]
 * @property {string} detail
 */

/**
 * @typedef {object} FanoutNode
 * @property {string} node
 * @property {string} [node_id]
 * @property {boolean} ok
 * @property {string} [error]
 * @property {string} [reason] machine-readable kind of the error (e.g. hot_keys_unavailable)
 * @property {string} [generated_at]
 * @property {number} [elapsed_ms]
 * @property {FanoutWarning[]} [warnings]
 */

/**
 * @typedef {object} Fanout
 * @property {FanoutNode[]} nodes
 * @property {number} responded
 * @property {number} expected
 */

/**
 * @typedef {object} Matrix
 * @property {number[]} column_unix_ms window starts, ascending, aligned to step_ms
 * @property {MatrixRow[]} rows sorted by start key
 * @property {WireSeries} series
 * @property {string} generated_at
 * @property {number} [step_ms]
 * @property {string} [node_id]
 * @property {Fanout} [fanout]
 * @property {NodeCoverage[]} [coverage] per node that answered, the merged columns its own
 *   answer lacked (it was down or restarting); absent when no node has a gap
 * @property {import('./leaders.js').TermLeader[]} [leaders] the node that led each (raft group,
 *   leader term) the write cells carry, where the server knows it
 * @property {Comparison} [compare] the change against a baseline window (diff mode only)
 * @property {Fanout} [baseline_fanout] the fan-out status of the baseline query
 */

/**
 * One row's change against the baseline (docs/ADMIN.md, "Comparing two windows").
 * @typedef {object} RowChange
 * @property {string} bucket_id
 * @property {number} current the row's traffic in the current window
 * @property {number} baseline baseline traffic of the row's key range, scaled to the current window's length
 * @property {number} delta current - baseline
 * @property {number|null} ratio current / baseline; null when the baseline is 0
 */

/**
 * @typedef {object} Comparison
 * @property {number} baseline_from_unix_ms
 * @property {number} baseline_to_unix_ms
 * @property {number} current_span_ms
 * @property {number} scale current_span_ms / baseline length
 * @property {number} current_total
 * @property {number} baseline_total unscaled
 * @property {number} baseline_unmatched unscaled baseline traffic outside every current row
 * @property {RowChange[]} rows one per current row, in the matrix's order
 */

/** @typedef {'off'|'prev'|'day'|'custom'} DiffMode */

/**
 * @typedef {object} NodeCoverage
 * @property {string} node
 * @property {string} [node_id]
 * @property {[number, number][]} missing runs of missing columns, [from, to) unix ms
 * @property {number} [truncated] runs left out
 */

/**
 * One key of GET /admin/api/v1/keyviz/hotkeys: the true count lies in [lower, upper].
 * @typedef {object} HotKey
 * @property {string} key base64 of the key (or of its keyed hash in hashed mode)
 * @property {string} preview printable label of the key
 * @property {number} estimate best estimate of its count
 * @property {number} lower
 * @property {number} upper
 * @property {number} share estimate / total of the selected range and window
 * @property {boolean} [truncated] the key was cut at 256 bytes
 */

/**
 * GET /admin/api/v1/keyviz/hotkeys.
 * @typedef {object} HotKeys
 * @property {Series} series
 * @property {'off'|'hashed'|'raw'|string} mode capture mode of the nodes merged
 * @property {number|null} [from_unix_ms]
 * @property {number|null} [to_unix_ms]
 * @property {HotKey[]} keys hottest first
 * @property {number} total exact total of the selected range and window
 * @property {number} floor upper bound on the count of any key not listed
 * @property {boolean} sampled true when any bound is statistical
 * @property {string[]} [warnings] why an input was left out of the merge
 * @property {Fanout} [fanout]
 */

/**
 * @typedef {object} Session
 * @property {string} role
 * @property {string} expires_at RFC 3339
 */

/**
 * A byte range of keys; `null` bounds are open. Base64 strings exactly as on the wire.
 * @typedef {object} KeyRange
 * @property {string|null} start
 * @property {string|null} end
 */

/**
 * The whole view; every field round-trips through the URL query string.
 * @typedef {object} ViewState
 * @property {Series} series
 * @property {RangePreset} range
 * @property {number} from custom window start, unix ms (0 when range is a preset)
 * @property {number} to custom window end, unix ms (0 when range is a preset)
 * @property {number} rows row budget 1..1024
 * @property {number} auto auto-refresh period in seconds (0, 5 or 30)
 * @property {boolean} live append new columns as the server flushes them
 * @property {ScaleKind} scale
 * @property {PaletteName} palette
 * @property {KeyRange|null} keys key-range zoom, sent as key_start/key_end so the server
 *   returns finer rows for the range; null = all keys
 * @property {string} prefix the key-prefix text that produced `keys` ("" when the key range
 *   came from a brush or none is set), so the box shows it again
 * @property {number} span window width in ms for range `span` (0 otherwise)
 * @property {number} bright brightness exponent, BRIGHT_MIN..BRIGHT_MAX: the top colour is
 *   drawn at max / 2^bright (values above saturate), so weak structure beside a very hot row
 *   shows up; 0 = the max in view
 * @property {DiffMode} diff compare with a baseline window: off, the previous window of the
 *   same width, the same window a day earlier, or the custom `bfrom`..`bto`
 * @property {number} bfrom custom baseline start, unix ms (0 unless diff is custom)
 * @property {number} bto custom baseline end, unix ms (0 unless diff is custom)
 */

export {};
