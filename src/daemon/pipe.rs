//! The control channel on Windows: a named pipe (`\\.\pipe\backupd`, or one derived from the configured socket path: `paths::pipe_name`), open to SYSTEM, Administrators and the pipe's owner only, local clients only; the same JSON-lines protocol as the Unix socket (`server.rs`).

use super::core::Command;
use super::server::{connection, SocketError};
use std::path::Path;
use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use tokio::sync::{broadcast, mpsc};

/// The pipe's access list (SDDL): full access for LocalSystem (SY), the Administrators group
/// (BA) and the owner (OW: the user the daemon runs as), nobody else; protected from
/// inheritance (P).
const PIPE_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;OW)";

/// A bound pipe: its name, the security descriptor every instance is created with, and the
/// instance waiting for the next client.
pub struct Listener {
    name: String,
    security: Security,
    next: NamedPipeServer,
}

/// A self-relative security descriptor made from [`PIPE_SDDL`] (freed on drop).
struct Security(windows_sys::Win32::Security::PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is an immutable block of memory owned by this value; the system only
// reads it while creating a pipe instance.
unsafe impl Send for Security {}
unsafe impl Sync for Security {}

impl Security {
    fn new() -> std::io::Result<Security> {
        use windows_sys::Win32::Security::Authorization::{
            ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
        };
        let wide: Vec<u16> = PIPE_SDDL.encode_utf16().chain(Some(0)).collect();
        let mut sd: windows_sys::Win32::Security::PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `wide` is NUL-terminated; `sd` receives a LocalAlloc'd descriptor.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                wide.as_ptr(),
                SDDL_REVISION_1,
                &mut sd,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Security(sd))
    }

    /// Creates a pipe instance with this descriptor.
    fn create(&self, name: &str, first: bool) -> std::io::Result<NamedPipeServer> {
        use windows_sys::Win32::Security::SECURITY_ATTRIBUTES;
        let mut attrs = SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.0,
            bInheritHandle: 0,
        };
        let mut opts = ServerOptions::new();
        opts.first_pipe_instance(first).reject_remote_clients(true);
        // SAFETY: `attrs` is a valid SECURITY_ATTRIBUTES whose descriptor outlives the call.
        unsafe { opts.create_with_security_attributes_raw(name, &mut attrs as *mut _ as *mut _) }
    }
}

impl Drop for Security {
    fn drop(&mut self) {
        // SAFETY: the descriptor was allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe { windows_sys::Win32::Foundation::LocalFree(self.0 as _) };
    }
}

/// Creates the pipe's first instance; fails with [`SocketError::InUse`] when another daemon
/// already serves the pipe.
pub fn bind(socket: &Path) -> Result<Listener, SocketError> {
    let name = crate::paths::pipe_name(socket);
    let io = |what, e| SocketError::Io {
        what,
        path: name.clone().into(),
        source: e,
    };
    let security = Security::new().map_err(|e| io("make the access list of", e))?;
    let next = match security.create(&name, true) {
        Ok(p) => p,
        // ERROR_ACCESS_DENIED for a first instance: the name is taken.
        Err(e) if e.raw_os_error() == Some(5) => return Err(SocketError::InUse(name.into())),
        Err(e) => return Err(io("create", e)),
    };
    Ok(Listener {
        name,
        security,
        next,
    })
}

/// Accepts clients until `shutdown`; each is served on its own task.
pub async fn serve(
    mut listener: Listener,
    commands: mpsc::Sender<Command>,
    mut shutdown: broadcast::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            r = listener.next.connect() => {
                // A new instance for the next client before this one is served (or, when
                // the connection failed, instead of this one).
                let fresh = match listener.security.create(&listener.name, false) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!("cannot create another instance of the control pipe {}: {e}; control connections stop until a restart", listener.name);
                        return;
                    }
                };
                let client = std::mem::replace(&mut listener.next, fresh);
                if let Err(e) = r {
                    tracing::error!("accepting a control connection on {} failed: {e}", listener.name);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
                let commands = commands.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(client, commands).await {
                        tracing::debug!("control connection ended: {e}");
                    }
                });
            }
        }
    }
}
