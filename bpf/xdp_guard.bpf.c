// SPDX-License-Identifier: GPL-2.0-only OR MIT
//
// The XDP guard in front of the RTMFP edge's UDP port(s) (docs/xdp.md).
//
// Runs for every frame the interface receives, before the kernel allocates anything for
// it. It parses Ethernet (up to two VLAN tags), IPv4 or IPv6, and UDP; a frame that is
// not UDP to one of the ports in `guard_ports` goes to the kernel stack untouched. For
// our ports it drops what cannot be RTMFP and rate-limits handshakes per source:
//
// - shorter than 20 bytes of UDP payload: RFC 7016 §2.2.2 puts a 4-byte scrambled
//   session id in front of AES-CBC ciphertext, at least one 16-byte block;
// - a handshake (session id 0, the id unscrambled from the first three words) is sealed
//   with the default key and no HMAC (RFC 7016 §2.2.3, RFC 7425 §4.4.3), so its payload
//   is 4 + a multiple of 16 bytes. Sessions that negotiated an HMAC append a tag of the
//   negotiated length, so the multiple is not checked for them;
// - handshakes beyond `rate` a second (with a burst of `burst`) from one source address,
//   a token bucket per address in an LRU map (`guard_handshakes`): a flood from one source
//   costs the server nothing past this point, and other sources still get through.
//
// What passes goes to the AF_XDP socket bound to the receiving queue, if `guard_xsks`
// has one (bpf_redirect_map's fallback action is XDP_PASS), else to the kernel stack.
// Every verdict is counted in the per-CPU `guard_counters`; the order of the slots is the
// ABI with src/engine/xdp_guard.rs (`Counter`).
//
// The buckets are shared by the CPUs without locks: two CPUs refilling one source's
// bucket at once may let a token or two too many through, never block a source.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MIN_PAYLOAD 20
#define SCRAMBLE_LEN 12
#define CBC_BLOCK 16
#define MAX_PORTS 16
#define MAX_QUEUES 256
#define NS_PER_SEC 1000000000ULL
// A bucket idle this long is full again; bounds the products below.
#define MAX_IDLE_NS (10 * NS_PER_SEC)

enum counter {
	COUNTER_NOT_OURS = 0,
	COUNTER_REDIRECTED = 1,
	COUNTER_PASSED = 2,
	COUNTER_HANDSHAKES = 3,
	COUNTER_DROP_SHORT = 4,
	COUNTER_DROP_BAD_LENGTH = 5,
	COUNTER_DROP_HANDSHAKE_RATE = 6,
	COUNTER_COUNT = 7,
};

struct guard_config {
	// Handshakes a second per source address, and the bucket's depth; rate 0 turns the
	// limit off.
	__u32 rate;
	__u32 burst;
};

struct bucket {
	// Tokens times NS_PER_SEC, so that refilling needs no division.
	__u64 scaled_tokens;
	__u64 last_ns;
};

struct source {
	// IPv4 addresses as IPv4-mapped IPv6 (::ffff:a.b.c.d).
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct guard_config);
} guard_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_PORTS);
	__type(key, __u16); // host byte order
	__type(value, __u8);
} guard_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct source);
	__type(value, struct bucket);
} guard_handshakes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} guard_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} guard_counters SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&guard_counters, &slot);

	// Per-CPU slot: no other CPU writes it.
	if (value)
		*value += 1;
}

static __always_inline __u32 be32(const __u8 *b)
{
	return ((__u32)b[0] << 24) | ((__u32)b[1] << 16) | ((__u32)b[2] << 8) | (__u32)b[3];
}

// Whether `from` may send one more handshake now.
static __always_inline int handshake_allowed(const struct source *from)
{
	__u32 zero = 0;
	struct guard_config *config = bpf_map_lookup_elem(&guard_config, &zero);
	struct bucket *bucket;
	__u64 now = bpf_ktime_get_ns();
	__u64 full, elapsed, tokens;

	if (!config || config->rate == 0)
		return 1;
	full = (__u64)config->burst * NS_PER_SEC;
	bucket = bpf_map_lookup_elem(&guard_handshakes, from);
	if (!bucket) {
		struct bucket fresh = {
			.scaled_tokens = full >= NS_PER_SEC ? full - NS_PER_SEC : 0,
			.last_ns = now,
		};

		bpf_map_update_elem(&guard_handshakes, from, &fresh, BPF_ANY);
		return config->burst > 0;
	}
	elapsed = now > bucket->last_ns ? now - bucket->last_ns : 0;
	if (elapsed > MAX_IDLE_NS)
		elapsed = MAX_IDLE_NS;
	tokens = bucket->scaled_tokens + elapsed * config->rate;
	if (tokens > full)
		tokens = full;
	bucket->last_ns = now;
	if (tokens < NS_PER_SEC) {
		bucket->scaled_tokens = tokens;
		return 0;
	}
	bucket->scaled_tokens = tokens - NS_PER_SEC;
	return 1;
}

SEC("xdp")
int rtmfp_xdp_guard(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct source from = {};
	struct udphdr *udp;
	__u16 proto, port;
	__u32 payload_len, session_id;
	const __u8 *payload;
	void *l3;
	int i;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	proto = eth->h_proto;
	l3 = eth + 1;
#pragma unroll
	for (i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		// A VLAN tag: TCI, then the encapsulated protocol.
		if (l3 + 4 > data_end)
			return XDP_PASS;
		proto = *(__u16 *)(l3 + 2);
		l3 += 4;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP)
			return XDP_PASS;
		// Fragments are the kernel's to reassemble.
		if (ip->frag_off & bpf_htons(0x3fff))
			return XDP_PASS;
		if (ip->ihl < 5)
			return XDP_PASS;
		udp = (void *)ip + ip->ihl * 4;
		from.addr[10] = 0xff;
		from.addr[11] = 0xff;
		__builtin_memcpy(&from.addr[12], &ip->saddr, 4);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;

		// UDP right after the fixed header; extension headers go to the kernel.
		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		udp = (void *)(ip6 + 1);
		__builtin_memcpy(from.addr, &ip6->saddr, 16);
	} else {
		return XDP_PASS;
	}

	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	port = bpf_ntohs(udp->dest);
	if (!bpf_map_lookup_elem(&guard_ports, &port)) {
		count(COUNTER_NOT_OURS);
		return XDP_PASS;
	}

	payload_len = bpf_ntohs(udp->len);
	payload_len = payload_len >= sizeof(*udp) ? payload_len - sizeof(*udp) : 0;
	payload = (const __u8 *)(udp + 1);
	if (payload_len < MIN_PAYLOAD || (void *)(payload + SCRAMBLE_LEN) > data_end) {
		count(COUNTER_DROP_SHORT);
		return XDP_DROP;
	}
	session_id = be32(payload) ^ be32(payload + 4) ^ be32(payload + 8);
	if (session_id == 0) {
		if ((payload_len - 4) % CBC_BLOCK != 0) {
			count(COUNTER_DROP_BAD_LENGTH);
			return XDP_DROP;
		}
		if (!handshake_allowed(&from)) {
			count(COUNTER_DROP_HANDSHAKE_RATE);
			return XDP_DROP;
		}
		count(COUNTER_HANDSHAKES);
	}

	if (bpf_redirect_map(&guard_xsks, ctx->rx_queue_index, XDP_PASS) == XDP_REDIRECT) {
		count(COUNTER_REDIRECTED);
		return XDP_REDIRECT;
	}
	count(COUNTER_PASSED);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
