/*
 * renkei plugin ABI, version 1.
 *
 * This is the only contract between the renkei host and a plugin. It is pure C so that any compiler
 * (and any language with a C FFI) can implement a plugin, and so that host and plugin never share a
 * C++ object, an exception, an allocator or a vtable across the boundary.
 *
 * Shape
 *   - A plugin exports exactly one symbol, `renkei_plugin_entry`, a function returning a pointer to a
 *     const `renkei_plugin_descriptor` with static storage duration.
 *   - The host checks `abi_major` (must equal the host's), `abi_minor` (must not be newer than the
 *     host's) and reads only min(struct_size, sizeof(host's descriptor)) bytes before it calls
 *     anything in the descriptor.
 *   - The host hands the plugin a `renkei_host_api` function table at `create`.
 *   - Data crosses the boundary only as Cap'n Proto bytes: a message is the flat serialisation
 *     (segment table + segments) of `Envelope` from schema/envelope.capnp.
 *
 * Evolution rules (binding for every future version of this header)
 *   - Fields are only ever appended to the end of a struct; `struct_size` tells the reader how much
 *     the writer knew about. Nothing is ever inserted, removed, reordered or retyped.
 *   - New capabilities arrive as interfaces looked up by string id (`get_interface`), e.g.
 *     "renkei.store.v1". An id names one frozen struct forever; a changed interface gets a new id.
 *   - A breaking change bumps RENKEI_ABI_MAJOR; the host refuses a plugin of another major.
 *
 * Threading (host side guarantees)
 *   - `create`, `start`, `stop`, `destroy` are called from one host thread, in that order, each once.
 *   - `handle` is called from one dedicated worker thread per plugin instance, never concurrently with
 *     itself, only between `start` and `stop`.
 *   - Every function in `renkei_host_api` may be called from any thread at any time between the return
 *     of `create` and the return of `stop`, unless its comment says otherwise.
 *
 * Errors
 *   - Every entry point returns a `renkei_status`; on failure it may fill `err` (never NULL when
 *     passed) with a NUL-terminated message. Entry points must not let a C++ exception escape; the
 *     SDK (sdk.hpp) does this for you.
 */
#ifndef RENKEI_PLUGIN_H
#define RENKEI_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RENKEI_ABI_MAJOR 1u
#define RENKEI_ABI_MINOR 0u

/* The single exported symbol. */
#define RENKEI_ENTRY_SYMBOL "renkei_plugin_entry"

#if defined(_WIN32)
#define RENKEI_EXPORT __declspec(dllexport)
#else
#define RENKEI_EXPORT __attribute__((visibility("default")))
#endif

typedef enum renkei_status {
    RENKEI_OK = 0,
    RENKEI_ERR_INVALID = 1,     /* the input violates a rule; do not retry the same input */
    RENKEI_ERR_UNSUPPORTED = 2, /* message type or interface not handled */
    RENKEI_ERR_DENIED = 3,      /* refused by policy */
    RENKEI_ERR_NOT_FOUND = 4,   /* a named thing (key, config key, node) does not exist */
    RENKEI_ERR_RETRY = 5,       /* transient failure: the host redelivers later */
    RENKEI_ERR_INTERNAL = 6     /* a bug or an environment failure */
} renkei_status;

typedef enum renkei_plugin_kind {
    RENKEI_KIND_BUSINESS = 1, /* domain logic: juki, fuhyo, card, ipn, mdoc */
    RENKEI_KIND_ADAPTER = 2   /* connects an external system (municipal system, vendor, wallet) */
} renkei_plugin_kind;

typedef enum renkei_log_level {
    RENKEI_LOG_TRACE = 0,
    RENKEI_LOG_DEBUG = 1,
    RENKEI_LOG_INFO = 2,
    RENKEI_LOG_WARN = 3,
    RENKEI_LOG_ERROR = 4
} renkei_log_level;

/* Error report filled by the callee. The caller owns the struct; the callee writes at most
 * sizeof(message) bytes including the terminating NUL. */
typedef struct renkei_error {
    int32_t code; /* a renkei_status */
    char message[512];
} renkei_error;

/* A byte buffer allocated by the host and handed to the plugin. The plugin owns it after the call
 * that produced it returns and must release it exactly once with renkei_host_api.buffer_free. */
typedef struct renkei_buffer {
    uint8_t* data;
    size_t size;
} renkei_buffer;

/*
 * Functions the host offers to a plugin. The table and `host_ctx` stay valid from the call to
 * `create` until `destroy` returns. Always pass `host_ctx` back as the first argument.
 */
typedef struct renkei_host_api {
    uint32_t struct_size; /* sizeof(renkei_host_api) as the host knows it; check before using a field */
    uint32_t abi_minor;   /* the host's RENKEI_ABI_MINOR */
    void* host_ctx;       /* opaque; owned by the host */

    /* Hands an envelope (flat Cap'n Proto `Envelope`) to the host for routing. The host copies the
     * bytes before returning; the plugin keeps ownership of `envelope`. The host fills in `id` when
     * it is empty, stamps `from` with this node's id and checks policy. Returns RENKEI_OK once the
     * message is accepted for delivery (not once it is delivered): a message for another node is
     * queued and committed to the host's durable outbox before it leaves and before the message
     * being handled (if any) is acknowledged to its sender. Thread-safe. */
    int32_t (*send)(void* host_ctx, const uint8_t* envelope, size_t size, renkei_error* err);

    /* Writes one log line (UTF-8, NUL-terminated) under the plugin's name. Never fails. Thread-safe.
     * Must never be given private keys or unmasked personal data. */
    void (*log)(void* host_ctx, int32_t level, const char* message);

    /* Reads the plugin's setting `key` (dotted path inside [plugin.settings] of the host
     * configuration) rendered as text. On success `*out` receives a host buffer (NUL-terminated, size
     * excludes the NUL) that the plugin frees with buffer_free. RENKEI_ERR_NOT_FOUND if absent. */
    int32_t (*config_get)(void* host_ctx, const char* key, renkei_buffer* out, renkei_error* err);

    /* Signs `data` with the host key named `key_name` (e.g. "node"); the private key never leaves
     * the host. `*signature` receives a host buffer. Thread-safe. */
    int32_t (*sign)(void* host_ctx, const char* key_name, const uint8_t* data, size_t size,
                    renkei_buffer* signature, renkei_error* err);

    /* Verifies `signature` over `data` against the public signing key the host trusts for node
     * `node_id`. RENKEI_OK when valid, RENKEI_ERR_DENIED when not. Thread-safe. */
    int32_t (*verify)(void* host_ctx, const char* node_id, const uint8_t* data, size_t size,
                      const uint8_t* signature, size_t signature_size, renkei_error* err);

    /* Seals `data` so that only node `recipient` can open it (end-to-end through intermediaries).
     * `*sealed` receives a host buffer. Thread-safe. */
    int32_t (*seal)(void* host_ctx, const char* recipient, const uint8_t* data, size_t size,
                    renkei_buffer* sealed, renkei_error* err);

    /* Opens data sealed to this node. RENKEI_ERR_DENIED if it was altered or sealed to another
     * node. `*plain` receives a host buffer. Thread-safe. */
    int32_t (*open)(void* host_ctx, const uint8_t* sealed, size_t size, renkei_buffer* plain,
                    renkei_error* err);

    /* Current time as Unix milliseconds (UTC). Tests may give the host a fake clock. */
    int64_t (*now_unix_ms)(void* host_ctx);

    /* Releases a buffer the host handed out. Passing a zeroed buffer is a no-op. */
    void (*buffer_free)(void* host_ctx, renkei_buffer* buffer);

    /* Looks up an optional host interface by id (e.g. "renkei.store.v1"); NULL when the host does
     * not offer it. The returned struct lives as long as the host_api table. */
    const void* (*get_interface)(void* host_ctx, const char* interface_id);
} renkei_host_api;

/*
 * What a plugin exports. All pointers must stay valid while the library is loaded (static storage).
 */
typedef struct renkei_plugin_descriptor {
    uint32_t abi_major;   /* RENKEI_ABI_MAJOR the plugin was built against */
    uint32_t abi_minor;   /* RENKEI_ABI_MINOR the plugin was built against */
    uint32_t struct_size; /* sizeof(renkei_plugin_descriptor) as the plugin knows it */
    uint32_t kind;        /* a renkei_plugin_kind */
    const char* name;     /* short ascii name, e.g. "juki" */
    const char* version;  /* the plugin's own version, e.g. "1.4.2" */
    /* Message types handled, e.g. "juki.IdentityUpdate"; NULL-terminated array. A type ending in
     * ".*" handles every type with that prefix. */
    const char* const* message_types;

    /* Creates one instance. `host` is valid until `destroy` returns. On success `*instance` is an
     * opaque pointer the host passes back to every other call. Called once, first. */
    int32_t (*create)(const renkei_host_api* host, void** instance, renkei_error* err);

    /* Starts the instance (open files, start its own threads). After RENKEI_OK the host may call
     * `handle`. A plugin may call host->send from here on. */
    int32_t (*start)(void* instance, renkei_error* err);

    /* Handles one envelope (flat Cap'n Proto `Envelope`). The bytes are owned by the host and valid
     * only during the call; they are 8-byte aligned. RENKEI_OK acknowledges the message: the host
     * will not redeliver it. RENKEI_ERR_RETRY asks for redelivery with back-off; any other status is
     * a permanent failure, reported to the sender and to the dead-letter store. */
    int32_t (*handle)(void* instance, const uint8_t* envelope, size_t size, renkei_error* err);

    /* Stops the instance: no `handle` call is in flight or will follow. The plugin joins its own
     * threads and stops calling the host. */
    void (*stop)(void* instance);

    /* Frees the instance. Called once, last, after `stop` (or after a failed `start`). */
    void (*destroy)(void* instance);

    /* Optional plugin-side interface lookup by id (NULL if the plugin offers none). */
    const void* (*get_interface)(void* instance, const char* interface_id);
} renkei_plugin_descriptor;

/*
 * Interface "renkei.store.v1" (host_api->get_interface): a key-value store private to the plugin
 * instance, kept by the host (SQLite in <data_dir>/store/<instance>.db).
 *
 * Exactly-once effect: writes made during `handle` are committed in one transaction together with
 * the host's record that this message id was handled. If the host dies mid-way nothing of the
 * message's writes survives and it is delivered again; a message whose writes were committed is
 * never handed to `handle` again. A non-OK status from `handle` rolls its writes back.
 * Writes made in `start` or `stop` commit immediately.
 *
 * Threading: call only from within create/start/handle/stop (the host's threads for this
 * instance), never from threads the plugin started itself. Keys and values are opaque bytes
 * (keys at most 1 KiB, values at most 16 MiB). Process-isolated plugins do not get this interface
 * yet (get_interface returns NULL there).
 */
#define RENKEI_STORE_V1 "renkei.store.v1"

typedef struct renkei_store_v1 {
    uint32_t struct_size;
    int32_t (*put)(void* host_ctx, const uint8_t* key, size_t key_size, const uint8_t* value,
                   size_t value_size, renkei_error* err);
    /* RENKEI_ERR_NOT_FOUND when absent; otherwise `*value` receives a host buffer. */
    int32_t (*get)(void* host_ctx, const uint8_t* key, size_t key_size, renkei_buffer* value,
                   renkei_error* err);
    /* RENKEI_OK whether or not the key existed. */
    int32_t (*remove)(void* host_ctx, const uint8_t* key, size_t key_size, renkei_error* err);
} renkei_store_v1;

/*
 * Interface "renkei.calendar.v1" (host_api->get_interface): the node's operating calendar
 * (共通運用時間帯: operating days, holidays, the window), so deadlines such as "by the start of
 * business on the next operating day" are computed from the one calendar the host enforces.
 * Thread-safe. Process-isolated plugins do not get this interface yet.
 */
#define RENKEI_CALENDAR_V1 "renkei.calendar.v1"

typedef struct renkei_calendar_v1 {
    uint32_t struct_size;
    /* Unix ms of the start of business on the first operating day after the local date of `unix_ms`. */
    int64_t (*next_business_start)(void* host_ctx, int64_t unix_ms);
    /* 1 if the common operating window is open at `unix_ms`, else 0. */
    int32_t (*open_at)(void* host_ctx, int64_t unix_ms);
} renkei_calendar_v1;

/* Signature of the exported entry point. */
typedef const renkei_plugin_descriptor* (*renkei_plugin_entry_fn)(void);

/* Use once per plugin library:  RENKEI_DEFINE_ENTRY(my_descriptor)  */
#ifdef __cplusplus
#define RENKEI_DEFINE_ENTRY(descriptor)                                                            \
    extern "C" RENKEI_EXPORT const renkei_plugin_descriptor* renkei_plugin_entry(void) {           \
        return &(descriptor);                                                                      \
    }
#else
#define RENKEI_DEFINE_ENTRY(descriptor)                                                            \
    RENKEI_EXPORT const renkei_plugin_descriptor* renkei_plugin_entry(void) { return &(descriptor); }
#endif

#ifdef __cplusplus
}
#endif

#endif /* RENKEI_PLUGIN_H */
