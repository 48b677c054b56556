// SPDX-License-Identifier: GPL-2.0-only OR MIT
//
// Session steering for the RTMFP edge's SO_REUSEPORT group (docs/steering.md).
//
// Every shard binds the same UDP port; the kernel runs this program for each datagram
// before it picks one of the group's sockets. RFC 7016 §2.2.2: the first 32-bit word of
// an RTMFP datagram is the session id XOR the next two words, and the top byte of the
// session ids this server hands out is the owning shard (src/proto/endpoint.rs). So the
// program recovers the id and selects socket[top byte] from `shard_sockets`.
//
// When it has no owner to name (datagram shorter than 12 bytes, session id 0 = handshake,
// or no socket in that shard's slot) it returns SK_PASS without selecting, and the kernel
// falls back to its usual hash over the 4-tuple. It never drops: a datagram it cannot
// place still reaches some shard, whose job it is to answer it or pass it on.
//
// The Rust twin of this rule is `owner_shard` in src/engine/steering.rs; the tests in
// tests/steering_bpf.rs check that the two agree.

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

// The top byte of a session id: any of 256 values may arrive, so every one has a slot,
// and a slot with no socket in it is simply empty (-ENOENT from the helper).
#define MAX_SHARDS 256

// For UDP the kernel runs reuseport selection while skb->data still points at the UDP
// header, so the program's byte offsets (ctx->data, bpf_skb_load_bytes) start there, and
// ctx->len counts the header too. tests/steering_bpf.rs pins this down: a wrong offset
// would send datagrams to the wrong socket.
#define UDP_HEADER_LEN 8
// RFC 7016 §2.2.2: scrambled id + two words of ciphertext.
#define SCRAMBLE_LEN 12

// Counter slots; the order is the ABI with src/engine/steering.rs (`Counter`).
enum counter {
	COUNTER_STEERED = 0,
	COUNTER_HANDSHAKE = 1,
	COUNTER_SHORT = 2,
	COUNTER_NO_SUCH_SHARD = 3,
	COUNTER_COUNT = 4,
};

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, MAX_SHARDS);
	__type(key, __u32);
	__type(value, __u64);
} shard_sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} steer_counters SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&steer_counters, &slot);

	// Per-CPU slot: no other CPU writes it, so a plain increment is enough.
	if (value)
		*value += 1;
}

static __always_inline __u32 be32(const __u8 *b)
{
	return ((__u32)b[0] << 24) | ((__u32)b[1] << 16) | ((__u32)b[2] << 8) | (__u32)b[3];
}

SEC("sk_reuseport")
int rtmfp_steer(struct sk_reuseport_md *ctx)
{
	const __u8 *data = ctx->data;
	const __u8 *data_end = ctx->data_end;
	__u8 head[SCRAMBLE_LEN];
	__u32 session_id;
	__u32 shard;

	// The group is UDP only; anything else keeps the kernel's choice.
	if (ctx->ip_protocol != IPPROTO_UDP)
		return SK_PASS;

	if (ctx->len < UDP_HEADER_LEN + SCRAMBLE_LEN) {
		count(COUNTER_SHORT);
		return SK_PASS;
	}

	// Direct reads when the 20 bytes sit in the linear part of the skb (always so on
	// loopback, and usually from NICs): ~130 ns per run against ~165 ns through
	// bpf_skb_load_bytes (run_time_ns with kernel.bpf_stats_enabled, 2-core VM). The helper
	// covers a payload that starts in a page fragment.
	if (data + UDP_HEADER_LEN + SCRAMBLE_LEN <= data_end) {
		data += UDP_HEADER_LEN;
		session_id = be32(data) ^ be32(data + 4) ^ be32(data + 8);
	} else if (bpf_skb_load_bytes(ctx, UDP_HEADER_LEN, head, sizeof(head)) == 0) {
		session_id = be32(head) ^ be32(head + 4) ^ be32(head + 8);
	} else {
		count(COUNTER_SHORT);
		return SK_PASS;
	}

	if (session_id == 0) {
		count(COUNTER_HANDSHAKE);
		return SK_PASS;
	}

	shard = session_id >> 24;
	if (bpf_sk_select_reuseport(ctx, &shard_sockets, &shard, 0) < 0) {
		count(COUNTER_NO_SUCH_SHARD);
		return SK_PASS;
	}

	count(COUNTER_STEERED);
	return SK_PASS;
}

// The kernel wants a GPL-compatible license string; this file is dual GPL-2.0/MIT (see the
// SPDX line), which the kernel's list spells "Dual MIT/GPL".
char LICENSE[] SEC("license") = "Dual MIT/GPL";
