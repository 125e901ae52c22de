DROP TABLE IF EXISTS logic_bundle, system_event, daemon_instance, subrequest, request, disk_copy, file,
    file_system, disk_server, service_class;
DROP TYPE IF EXISTS file_system_status, disk_server_status, disk_copy_status, subrequest_status,
    request_status, request_type;
