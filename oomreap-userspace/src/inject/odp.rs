//! An RDMA on-demand-paging (ODP) memory region over the victim's memory: the mmu notifier that
//! refuses the reaper.
//!
//! `ibv_reg_mr` with `IBV_ACCESS_ON_DEMAND` makes the kernel (`ib_umem_odp_get`) insert an
//! interval notifier on the caller's mm over the region. rdma_rxe's callback
//! (`rxe_ib_invalidate_range`, Linux 6.15+) returns false for a non-blockable range, so every
//! reaper pass over that VMA is refused and partial, and process_mrelease returns -EAGAIN.
//!
//! libibverbs is opened with `dlopen` at run time rather than linked: only this scenario needs
//! it, and oomreap must start on machines without it (the static binary cannot link it at all).
use std::ffi::{CStr, CString, c_char, c_int, c_void};

/// `IBV_ACCESS_LOCAL_WRITE` and `IBV_ACCESS_ON_DEMAND` (infiniband/verbs.h).
const ACCESS_LOCAL_WRITE: c_int = 1;
const ACCESS_ON_DEMAND: c_int = 1 << 6;

/// The libibverbs soname (Debian's libibverbs1).
const LIBIBVERBS: &str = "libibverbs.so.1";

type GetDeviceList = unsafe extern "C" fn(*mut c_int) -> *mut *mut c_void;
type FreeDeviceList = unsafe extern "C" fn(*mut *mut c_void);
type GetDeviceName = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type OpenDevice = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type AllocPd = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type RegMr = unsafe extern "C" fn(*mut c_void, *mut c_void, usize, c_int) -> *mut c_void;
type DeregMr = unsafe extern "C" fn(*mut c_void) -> c_int;

/// The libibverbs functions this uses.
struct Verbs {
    get_device_list: GetDeviceList,
    free_device_list: FreeDeviceList,
    get_device_name: GetDeviceName,
    open_device: OpenDevice,
    alloc_pd: AllocPd,
    reg_mr: RegMr,
    dereg_mr: DeregMr,
}

/// A registered ODP region. Its context and protection domain are left open on purpose: they
/// live as long as the process (a victim), and the kernel tears them down at its exit.
pub struct OdpRegion {
    verbs: Verbs,
    mr: *mut c_void,
    pub address: u64,
    pub len: u64,
}

impl OdpRegion {
    /// Deregisters the region: the kernel removes its interval notifier from the mm.
    pub fn deregister(self) -> std::io::Result<()> {
        // SAFETY: `mr` came from ibv_reg_mr and is deregistered once (self is consumed).
        match unsafe { (self.verbs.dereg_mr)(self.mr) } {
            0 => Ok(()),
            errno => Err(std::io::Error::from_raw_os_error(errno)),
        }
    }
}

/// Whether libibverbs can be loaded here, and why not.
pub fn verbs_available() -> Result<(), String> {
    Verbs::load().map(drop)
}

/// Registers `len` bytes at `address` (already mapped) as an ODP memory region on RDMA
/// device `device`.
pub fn register(device: &str, address: *mut u8, len: usize) -> std::io::Result<OdpRegion> {
    let verbs = Verbs::load().map_err(std::io::Error::other)?;
    let context = verbs.open_device(device)?;
    // SAFETY: `context` is an open device context.
    let pd = unsafe { (verbs.alloc_pd)(context) };
    if pd.is_null() {
        return Err(last_error("ibv_alloc_pd"));
    }
    // SAFETY: the region is mapped and ours for the life of the process; the flags ask for
    // an on-demand-paging registration, which pins nothing.
    let mr = unsafe {
        (verbs.reg_mr)(
            pd,
            address.cast(),
            len,
            ACCESS_LOCAL_WRITE | ACCESS_ON_DEMAND,
        )
    };
    if mr.is_null() {
        let err = std::io::Error::last_os_error();
        let hint = if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
            "; the device has no on-demand paging (rdma_rxe has it since Linux 6.15, with \
             CONFIG_INFINIBAND_ON_DEMAND_PAGING)"
        } else {
            ""
        };
        return Err(std::io::Error::new(
            err.kind(),
            format!("ibv_reg_mr with IBV_ACCESS_ON_DEMAND on {device:?} failed: {err}{hint}"),
        ));
    }
    Ok(OdpRegion {
        verbs,
        mr,
        address: address as u64,
        len: len as u64,
    })
}

impl Verbs {
    fn load() -> Result<Self, String> {
        let soname = CString::new(LIBIBVERBS).map_err(|e| e.to_string())?;
        // SAFETY: dlopen with a NUL-terminated name; the handle is never closed, so every
        // symbol stays valid for the life of the process.
        let handle = unsafe { libc::dlopen(soname.as_ptr(), libc::RTLD_NOW) };
        if handle.is_null() {
            return Err(format!(
                "cannot load {LIBIBVERBS} (install libibverbs1 and ibverbs-providers): {}",
                dl_error()
            ));
        }
        let symbol = |name: &str| -> Result<*mut c_void, String> {
            let c_name = CString::new(name).map_err(|e| e.to_string())?;
            // SAFETY: a symbol lookup in a live handle.
            let address = unsafe { libc::dlsym(handle, c_name.as_ptr()) };
            if address.is_null() {
                Err(format!("{LIBIBVERBS} has no {name}"))
            } else {
                Ok(address)
            }
        };
        // SAFETY (each transmute): the symbols are libibverbs' exported functions, whose C
        // signatures the types above spell out.
        unsafe {
            Ok(Self {
                get_device_list: std::mem::transmute::<*mut c_void, GetDeviceList>(symbol(
                    "ibv_get_device_list",
                )?),
                free_device_list: std::mem::transmute::<*mut c_void, FreeDeviceList>(symbol(
                    "ibv_free_device_list",
                )?),
                get_device_name: std::mem::transmute::<*mut c_void, GetDeviceName>(symbol(
                    "ibv_get_device_name",
                )?),
                open_device: std::mem::transmute::<*mut c_void, OpenDevice>(symbol(
                    "ibv_open_device",
                )?),
                alloc_pd: std::mem::transmute::<*mut c_void, AllocPd>(symbol("ibv_alloc_pd")?),
                reg_mr: std::mem::transmute::<*mut c_void, RegMr>(symbol("ibv_reg_mr")?),
                dereg_mr: std::mem::transmute::<*mut c_void, DeregMr>(symbol("ibv_dereg_mr")?),
            })
        }
    }

    /// Opens the device called `name`.
    fn open_device(&self, name: &str) -> std::io::Result<*mut c_void> {
        let mut count: c_int = 0;
        // SAFETY: writes the count; returns a NULL-terminated array or NULL.
        let list = unsafe { (self.get_device_list)(&mut count) };
        if list.is_null() {
            return Err(last_error("ibv_get_device_list"));
        }
        let mut names = Vec::new();
        let mut context = std::ptr::null_mut();
        for i in 0..usize::try_from(count).unwrap_or(0) {
            // SAFETY: `i < count` entries of the array the library returned.
            let device = unsafe { *list.add(i) };
            // SAFETY: a device from the list; the name is a NUL-terminated string it owns.
            let device_name = unsafe { CStr::from_ptr((self.get_device_name)(device)) }
                .to_string_lossy()
                .into_owned();
            if device_name == name {
                // SAFETY: a device from the list, opened before the list is freed.
                context = unsafe { (self.open_device)(device) };
            }
            names.push(device_name);
        }
        // SAFETY: the list returned above, freed once; the context outlives it by design.
        unsafe { (self.free_device_list)(list) };
        if context.is_null() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("cannot open RDMA device {name:?} (libibverbs sees {names:?})"),
            ));
        }
        Ok(context)
    }
}

fn last_error(call: &str) -> std::io::Error {
    let err = std::io::Error::last_os_error();
    std::io::Error::new(err.kind(), format!("{call} failed: {err}"))
}

fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated message valid until the next dl call.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: as above.
        unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned()
    }
}
