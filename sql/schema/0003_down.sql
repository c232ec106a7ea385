-- Revision 0003 down.
SELECT 1;
