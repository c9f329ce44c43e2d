-- The checks 0012 wrote again, validated over the rows in place. A transaction of its own: VALIDATE
-- takes a SHARE UPDATE EXCLUSIVE lock, which lets reserves, confirms and expiry write while it reads.
ALTER TABLE reservations VALIDATE CONSTRAINT reservations_quantity_check;
ALTER TABLE reservations VALIDATE CONSTRAINT reservations_status_check;
ALTER TABLE reservations VALIDATE CONSTRAINT reservations_payment_status_check;
