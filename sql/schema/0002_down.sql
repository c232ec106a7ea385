-- Revision 0002 down.
SELECT 1;
