//! The in-process interface for Dom0's own services (toolstack, backends):
//! the same operations as the wire, without encoding, through a local
//! connection. Watch events for that connection are collected with
//! [`Session::take_watch_events`]; events for guests are queued on their
//! rings and announced by [`Xenstored::take_actions`].

use alloc::string::String;
use alloc::vec::Vec;

use crate::Error;
use crate::connection::ConnectionId;
use crate::permissions::Permissions;
use crate::request::{Request, Response};
use crate::server::Xenstored;
use crate::transaction::TransactionId;
use crate::watch::WatchEvent;

/// A connection's view of the store, optionally inside a transaction.
#[derive(Debug)]
pub struct Session<'a> {
    store: &'a mut Xenstored,
    connection: ConnectionId,
    transaction: Option<TransactionId>,
}

impl Xenstored {
    /// Calls on behalf of `connection` (usually from
    /// [`Xenstored::open_local`]), inside `transaction` if given.
    pub fn session(
        &mut self,
        connection: ConnectionId,
        transaction: Option<TransactionId>,
    ) -> Session<'_> {
        Session {
            store: self,
            connection,
            transaction,
        }
    }
}

fn unexpected(_: Response) -> Error {
    Error::InputOutput
}

impl Session<'_> {
    fn call(&mut self, request: Request<'_>) -> Result<Response, Error> {
        self.store
            .request(self.connection, self.transaction, request)
    }

    fn acknowledge(&mut self, request: Request<'_>) -> Result<(), Error> {
        match self.call(request)? {
            Response::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// READ.
    pub fn read(&mut self, path: &str) -> Result<Vec<u8>, Error> {
        match self.call(Request::Read { path })? {
            Response::Value(value) => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    /// WRITE (creating missing parents).
    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<(), Error> {
        self.acknowledge(Request::Write { path, value })
    }

    /// MKDIR.
    pub fn mkdir(&mut self, path: &str) -> Result<(), Error> {
        self.acknowledge(Request::Mkdir { path })
    }

    /// RM (recursive).
    pub fn remove(&mut self, path: &str) -> Result<(), Error> {
        self.acknowledge(Request::Remove { path })
    }

    /// DIRECTORY (no payload limit in-process).
    pub fn directory(&mut self, path: &str) -> Result<Vec<String>, Error> {
        match self.call(Request::Directory { path })? {
            Response::Names(names) => Ok(names),
            other => Err(unexpected(other)),
        }
    }

    /// GET_PERMS.
    pub fn get_permissions(&mut self, path: &str) -> Result<Permissions, Error> {
        match self.call(Request::GetPermissions { path })? {
            Response::Permissions(permissions) => Ok(permissions),
            other => Err(unexpected(other)),
        }
    }

    /// SET_PERMS.
    pub fn set_permissions(&mut self, path: &str, permissions: Permissions) -> Result<(), Error> {
        self.acknowledge(Request::SetPermissions { path, permissions })
    }

    /// WATCH; its first event is queued at once.
    pub fn watch(&mut self, path: &str, token: &[u8]) -> Result<(), Error> {
        self.acknowledge(Request::Watch {
            path,
            token,
            depth: None,
        })
    }

    /// UNWATCH.
    pub fn unwatch(&mut self, path: &str, token: &[u8]) -> Result<(), Error> {
        self.acknowledge(Request::Unwatch { path, token })
    }

    /// TRANSACTION_START: the new transaction's id, for a further
    /// [`Xenstored::session`] inside it.
    pub fn transaction_start(&mut self) -> Result<TransactionId, Error> {
        match self.call(Request::TransactionStart)? {
            Response::TransactionStarted(id) => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// TRANSACTION_END of this session's transaction; `EAGAIN` means retry.
    pub fn transaction_end(&mut self, commit: bool) -> Result<(), Error> {
        self.acknowledge(Request::TransactionEnd { commit })
    }

    /// The watch events waiting for this connection.
    pub fn take_watch_events(&mut self) -> Vec<WatchEvent> {
        self.store.take_watch_events(self.connection)
    }
}
