//! openraft's network traits over the internal transport, one factory per group.
//!
//! Each RPC is `POST /raft/{group}/{append|vote|snapshot}` with the openraft request as JSON;
//! the peer answers `Result<Response, RaftError>` as JSON. Transport failures become
//! `Unreachable` so openraft backs off instead of hammering a dead peer.

use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::TypeConfig;
use crate::transport::{PeerClient, TransportError};

type NodeId = u64;

/// Creates per-peer clients for one group.
pub(crate) struct NetworkFactory {
    group: u64,
    client: PeerClient,
}

impl NetworkFactory {
    pub(crate) fn new(group: u64, client: PeerClient) -> Self {
        Self { group, client }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        GroupNetwork {
            group: self.group,
            target,
            addr: node.addr.clone(),
            client: self.client.clone(),
        }
    }
}

/// Connection of one group to one peer.
pub(crate) struct GroupNetwork {
    group: u64,
    target: NodeId,
    addr: String,
    client: PeerClient,
}

impl GroupNetwork {
    async fn rpc<Q, R, E>(
        &self,
        kind: &str,
        req: &Q,
        ttl: Duration,
    ) -> Result<R, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Q: Serialize,
        R: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let path = format!("/raft/{}/{kind}", self.group);
        let answer: Result<R, RaftError<NodeId, E>> = self
            .client
            .call(&self.addr, &path, req, ttl)
            .await
            .map_err(|e| match e {
                TransportError::Unreachable { .. }
                | TransportError::Timeout(_)
                | TransportError::Status { .. } => RPCError::Unreachable(Unreachable::new(&e)),
                _ => RPCError::Network(NetworkError::new(&e)),
            })?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for GroupNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc("append", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.rpc("snapshot", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc("vote", &rpc, option.hard_ttl()).await
    }
}
