// Package failover is the failure suite: a whole instance on a pg_auto_failover formation
// (framework/pgha), its disk servers on hosts of their own (testsuites/netns), under the
// steady load of testsuites/load, while daemons, hosts, links, leaders and the database
// primary are killed, cut off and paused; at the end the load's judge says whether anything
// acknowledged was lost. `make failover` runs it against a formation it sets up from
// scratch; `make test` runs the short version. Everything is in the tests.
package failover
