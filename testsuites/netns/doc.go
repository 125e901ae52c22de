// Package netns runs a test's hosts on one machine, so that a host can die whole or be cut
// off from the network while its processes keep running. It is test support for the
// failure suites (testsuites/e2e, testsuites/failover) and needs root (or CAP_SYS_ADMIN
// and CAP_NET_ADMIN) and iproute2's ip command (`make netns/install`).
//
// A Network is a Linux bridge in the root network namespace with a private /24 of its own
// (10.213.<n>.0/24, <n> free on this machine), the bridge holding .1 so that the test
// harness, and a database it runs, are on the network too. Each Host is a network
// namespace linked to the bridge by a veth pair, with the next address; it has a
// loopback, that address and a route to its /24, and nothing else: no default route, so
// its traffic goes to loopback or to addresses of this network, never off the machine.
//
//	root namespace (the test, PostgreSQL on 10.213.n.1)
//	    │
//	  pxnet<n>  bridge 10.213.n.1/24
//	    ├── pxn<n>h2 ══ eth0 10.213.n.2   namespace pollux-<n>-disk1
//	    ├── pxn<n>h3 ══ eth0 10.213.n.3   namespace pollux-<n>-disk2
//	    └── …
//
// A host's life:
//
//	AddHost ──▶ up ──Cut (its bridge port down)──▶ cut off ──Restore──▶ up
//	             │                                  │
//	             └──Kill (kill -9 of every process in the namespace)──▶ dead ──Start──▶ up
//
// Cut takes the root side of the host's veth down: the host sees NO-CARRIER, its packets
// are lost as on a pulled cable, its processes and their connections stay; Restore brings
// it back and TCP's retransmissions carry the connections on. Kill leaves the namespace,
// so a host can be started again (a reboot).
//
// Names carry the network's number (bridge pxnet<n>, veths pxn<n>h<i>, namespaces
// pollux-<n>-<host>), and the bridge's alias records the process that made it and when
// that process started. NewNetwork first removes what runs whose process is gone left
// behind, under a lock that also makes claiming a number atomic between test processes.
//
// Unix sockets are files and cross namespaces: a process in a cut-off host still reaches
// a server's Unix socket. Services the hosts use must be reached over TCP at addresses of
// the network: PostgreSQL with pgcluster.Options.Listen at Network.Address (the server
// runs in the root namespace, beside the test), or at a host's Address with
// pgcluster.Options.Launch set to that host's Start (the server runs on the host and dies
// with it).
package netns
