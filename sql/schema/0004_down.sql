-- Revision 0004 down.
SELECT 1;
