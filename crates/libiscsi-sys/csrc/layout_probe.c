/*
 * Layout probe for the libiscsi-sys crate.
 *
 * Compiled by build.rs against the installed libiscsi headers. The Rust unit
 * tests compare these sizes/offsets (computed by the C compiler from the real
 * header) with the hand-written #[repr(C)] structs in src/lib.rs.
 *
 * The order of the entries is part of the contract with src/lib.rs
 * (see `layout_tests::EXPECTED`): append only.
 */
#include <stddef.h>
#include <stdint.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>

static const size_t layout[] = {
	/* struct scsi_task */
	sizeof(struct scsi_task),
	offsetof(struct scsi_task, status),
	offsetof(struct scsi_task, cdb_size),
	offsetof(struct scsi_task, xfer_dir),
	offsetof(struct scsi_task, expxferlen),
	offsetof(struct scsi_task, cdb),
	offsetof(struct scsi_task, residual_status),
	offsetof(struct scsi_task, residual),
	offsetof(struct scsi_task, sense),
	offsetof(struct scsi_task, datain),
	offsetof(struct scsi_task, mem),
	offsetof(struct scsi_task, ptr),
	offsetof(struct scsi_task, itt),
	offsetof(struct scsi_task, cmdsn),
	offsetof(struct scsi_task, lun),
	offsetof(struct scsi_task, iovector_in),
	offsetof(struct scsi_task, iovector_out),
	/* struct scsi_sense */
	sizeof(struct scsi_sense),
	offsetof(struct scsi_sense, error_type),
	offsetof(struct scsi_sense, key),
	offsetof(struct scsi_sense, ascq),
	offsetof(struct scsi_sense, bit_pointer),
	offsetof(struct scsi_sense, field_pointer),
	/* struct scsi_data */
	sizeof(struct scsi_data),
	offsetof(struct scsi_data, size),
	offsetof(struct scsi_data, data),
	/* struct scsi_iovector */
	sizeof(struct scsi_iovector),
	offsetof(struct scsi_iovector, iov),
	offsetof(struct scsi_iovector, niov),
	offsetof(struct scsi_iovector, nalloc),
	offsetof(struct scsi_iovector, offset),
	offsetof(struct scsi_iovector, consumed),
	/* struct scsi_iovec */
	sizeof(struct scsi_iovec),
	offsetof(struct scsi_iovec, iov_base),
	offsetof(struct scsi_iovec, iov_len),
	/* struct iscsi_data */
	sizeof(struct iscsi_data),
	offsetof(struct iscsi_data, size),
	offsetof(struct iscsi_data, data),
	/* struct iscsi_url */
	sizeof(struct iscsi_url),
	offsetof(struct iscsi_url, portal),
	offsetof(struct iscsi_url, target),
	offsetof(struct iscsi_url, user),
	offsetof(struct iscsi_url, passwd),
	offsetof(struct iscsi_url, target_user),
	offsetof(struct iscsi_url, target_passwd),
	offsetof(struct iscsi_url, lun),
	offsetof(struct iscsi_url, iscsi),
	offsetof(struct iscsi_url, transport),
	/* struct iscsi_target_portal */
	sizeof(struct iscsi_target_portal),
	offsetof(struct iscsi_target_portal, next),
	offsetof(struct iscsi_target_portal, portal),
	/* struct iscsi_discovery_address */
	sizeof(struct iscsi_discovery_address),
	offsetof(struct iscsi_discovery_address, next),
	offsetof(struct iscsi_discovery_address, target_name),
	offsetof(struct iscsi_discovery_address, portals),
	/* struct scsi_readcapacity10 */
	sizeof(struct scsi_readcapacity10),
	offsetof(struct scsi_readcapacity10, lba),
	offsetof(struct scsi_readcapacity10, block_size),
	/* struct scsi_readcapacity16 */
	sizeof(struct scsi_readcapacity16),
	offsetof(struct scsi_readcapacity16, returned_lba),
	offsetof(struct scsi_readcapacity16, block_length),
	offsetof(struct scsi_readcapacity16, p_type),
	offsetof(struct scsi_readcapacity16, prot_en),
	offsetof(struct scsi_readcapacity16, p_i_exp),
	offsetof(struct scsi_readcapacity16, lbppbe),
	offsetof(struct scsi_readcapacity16, lbpme),
	offsetof(struct scsi_readcapacity16, lbprz),
	offsetof(struct scsi_readcapacity16, lalba),
	/* enum sizes (the Rust side uses c_int for every C enum) */
	sizeof(enum scsi_residual),
	sizeof(enum scsi_sense_key),
	sizeof(enum iscsi_session_type),
	sizeof(enum iscsi_header_digest),
	sizeof(enum iscsi_transport_type),
	/* the constant the cdb array is sized with */
	SCSI_CDB_MAX_SIZE,
	MAX_STRING_SIZE,
	/* asynchronous API: the callback pointer and the poll() bits libiscsi uses */
	sizeof(iscsi_command_cb),
	POLLIN,
	POLLOUT,
	POLLERR,
	POLLHUP,
};

/*
 * The asynchronous functions, written out again here exactly as src/lib.rs
 * declares them (Rust u64/u32 = uint64_t/uint32_t, c_int = int, c_uchar =
 * unsigned char). The build fails when the installed header disagrees.
 */
#define SAME_TYPE(fn, type) \
	_Static_assert(__builtin_types_compatible_p(__typeof__(&fn), type), \
		       #fn " differs from its declaration in src/lib.rs")

typedef void (*rs_command_cb)(struct iscsi_context *, int, void *, void *);
_Static_assert(__builtin_types_compatible_p(iscsi_command_cb, rs_command_cb),
	       "iscsi_command_cb differs from its declaration in src/lib.rs");

SAME_TYPE(iscsi_get_fd, int (*)(struct iscsi_context *));
SAME_TYPE(iscsi_which_events, int (*)(struct iscsi_context *));
SAME_TYPE(iscsi_service, int (*)(struct iscsi_context *, int));
SAME_TYPE(iscsi_queue_length, int (*)(struct iscsi_context *));
SAME_TYPE(iscsi_out_queue_length, int (*)(struct iscsi_context *));
SAME_TYPE(iscsi_scsi_cancel_task,
	  int (*)(struct iscsi_context *, struct scsi_task *));
SAME_TYPE(iscsi_scsi_cancel_all_tasks, void (*)(struct iscsi_context *));
SAME_TYPE(iscsi_scsi_command_async,
	  int (*)(struct iscsi_context *, int, struct scsi_task *,
		  rs_command_cb, struct iscsi_data *, void *));
SAME_TYPE(iscsi_read10_task,
	  struct scsi_task *(*)(struct iscsi_context *, int, uint32_t, uint32_t,
				int, int, int, int, int, int, rs_command_cb,
				void *));
SAME_TYPE(iscsi_write10_task,
	  struct scsi_task *(*)(struct iscsi_context *, int, uint32_t,
				unsigned char *, uint32_t, int, int, int, int,
				int, int, rs_command_cb, void *));
SAME_TYPE(iscsi_read16_task,
	  struct scsi_task *(*)(struct iscsi_context *, int, uint64_t, uint32_t,
				int, int, int, int, int, int, rs_command_cb,
				void *));
SAME_TYPE(iscsi_read16_iov_task,
	  struct scsi_task *(*)(struct iscsi_context *, int, uint64_t, uint32_t,
				int, int, int, int, int, int, rs_command_cb,
				void *, struct scsi_iovec *, int));
SAME_TYPE(iscsi_write16_task,
	  struct scsi_task *(*)(struct iscsi_context *, int, uint64_t,
				unsigned char *, uint32_t, int, int, int, int,
				int, int, rs_command_cb, void *));
SAME_TYPE(iscsi_write16_iov_task,
	  struct scsi_task *(*)(struct iscsi_context *, int, uint64_t,
				unsigned char *, uint32_t, int, int, int, int,
				int, int, rs_command_cb, void *,
				struct scsi_iovec *, int));
SAME_TYPE(iscsi_testunitready_task,
	  struct scsi_task *(*)(struct iscsi_context *, int, rs_command_cb,
				void *));

/* Number of entries in the layout table. */
size_t libiscsi_sys_layout_len(void)
{
	return sizeof(layout) / sizeof(layout[0]);
}

/* Entry `i` of the layout table, or (size_t)-1 when out of range. */
size_t libiscsi_sys_layout_entry(size_t i)
{
	if (i >= sizeof(layout) / sizeof(layout[0]))
		return (size_t)-1;
	return layout[i];
}
