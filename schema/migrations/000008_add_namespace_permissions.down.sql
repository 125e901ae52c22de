DELETE FROM policy WHERE name = 'namespace_umask';
DROP TABLE admin_user;
DROP TABLE user_group;
ALTER TABLE file DROP COLUMN mode, DROP COLUMN group_name;
DROP TABLE directory;
