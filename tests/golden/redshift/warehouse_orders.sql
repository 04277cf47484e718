-- suite warehouse_orders compiled for redshift

-- row_count
SELECT count(*) AS a0
FROM sales.orders;

-- freshness(created_at)
SELECT max(CASE WHEN (sales.orders.created_at <= '2026-11-24 06:30:00+00:00') THEN sales.orders.created_at END) AS a0
FROM sales.orders;

-- schema: sends no statement

-- volume_anomaly(created_at)
SELECT bucketed.bucket, count(*) AS rows
FROM (SELECT date_trunc('day', convert_timezone('Europe/Berlin', sales.orders.created_at)) AS bucket
FROM sales.orders
WHERE sales.orders.created_at >= '2026-10-25 23:00:00+00:00' AND sales.orders.created_at < '2026-11-23 23:00:00+00:00') AS bucketed GROUP BY bucketed.bucket;

-- orders_per_week (volume_anomaly)
SELECT bucketed.bucket, count(*) AS rows
FROM (SELECT date_trunc('week', CAST(sales.orders.order_date AS TIMESTAMP WITHOUT TIME ZONE)) AS bucket
FROM sales.orders
WHERE CAST(sales.orders.order_date AS TIMESTAMP WITHOUT TIME ZONE) >= '2026-10-19 00:00:00' AND CAST(sales.orders.order_date AS TIMESTAMP WITHOUT TIME ZONE) < '2026-11-23 00:00:00') AS bucketed GROUP BY bucketed.bucket;

-- orders_per_hour (volume_anomaly)
SELECT bucketed.bucket, count(*) AS rows
FROM (SELECT date_trunc('hour', sales.orders.paid_at) AS bucket
FROM sales.orders
WHERE sales.orders.paid_at >= '2026-10-27 06:00:00' AND sales.orders.paid_at < '2026-11-24 07:00:00') AS bucketed GROUP BY bucketed.bucket;

-- fat_finger(amount)
SELECT count(*) AS a0, count(CASE WHEN (sales.orders.amount IS NOT NULL AND NOT coalesce(sales.orders.amount * 0 = 0, false) OR sales.orders.price IS NOT NULL AND NOT coalesce(sales.orders.price * 0 = 0, false)) THEN 1 END) AS a1, count(sales.orders.amount) AS a2, count(CASE WHEN (sales.orders.amount IS NOT NULL AND NOT (sales.orders.seats IS NULL OR sales.orders.price IS NULL)) THEN 1 END) AS a3, count(CASE WHEN (sales.orders.amount IS NOT NULL AND NOT (sales.orders.seats IS NULL OR sales.orders.price IS NULL) AND CAST(sales.orders.amount AS NUMERIC(38, 10)) != CAST(sales.orders.seats AS NUMERIC(38, 10)) * CAST(sales.orders.price AS NUMERIC(38, 10)) AND abs(CAST(sales.orders.amount AS NUMERIC(38, 10)) - CAST(sales.orders.seats AS NUMERIC(38, 10)) * CAST(sales.orders.price AS NUMERIC(38, 10))) > 0.005) THEN 1 END) AS a4
FROM sales.orders;
SELECT sales.orders.order_id AS order_id, sales.orders.amount AS amount, sales.orders.price AS price, sales.orders.seats AS seats
FROM sales.orders
WHERE sales.orders.amount IS NOT NULL AND NOT coalesce(sales.orders.amount * 0 = 0, false) OR sales.orders.price IS NOT NULL AND NOT coalesce(sales.orders.price * 0 = 0, false) ORDER BY sales.orders.order_id
 LIMIT 20;
SELECT count(*) AS rows, count(CASE WHEN (numbers.amount IS NOT NULL AND NOT coalesce(numbers.amount * 0 = 0, false) OR numbers.price IS NOT NULL AND NOT coalesce(numbers.price * 0 = 0, false)) THEN 1 END) AS not_numbers, count(numbers.amount) AS values, count(CASE WHEN (numbers.amount IS NOT NULL AND NOT (numbers.seats IS NULL OR numbers.price IS NULL)) THEN 1 END) AS witnessed, count(CASE WHEN (numbers.amount IS NOT NULL AND NOT (numbers.seats IS NULL OR numbers.price IS NULL) AND CAST(numbers.amount AS NUMERIC(38, 10)) != CAST(numbers.seats AS NUMERIC(38, 10)) * CAST(numbers.price AS NUMERIC(38, 10)) AND abs(CAST(numbers.amount AS NUMERIC(38, 10)) - CAST(numbers.seats AS NUMERIC(38, 10)) * CAST(numbers.price AS NUMERIC(38, 10))) > 0.005) THEN 1 END) AS disagree
FROM (SELECT sales.orders.order_id AS order_id, sales.orders.customer_id AS customer_id, sales.orders.status AS status, sales.orders.currency AS currency, sales.orders.amount AS amount, sales.orders.seats AS seats, sales.orders.price AS price, sales.orders.created_at AS created_at, sales.orders.paid_at AS paid_at, sales.orders.order_date AS order_date
FROM sales.orders
WHERE NOT (sales.orders.amount IS NOT NULL AND NOT coalesce(sales.orders.amount * 0 = 0, false) OR sales.orders.price IS NOT NULL AND NOT coalesce(sales.orders.price * 0 = 0, false))) AS numbers;
SELECT numbers.order_id AS order_id, numbers.amount AS amount, numbers.price AS price, numbers.seats AS seats, numbers.currency AS currency
FROM (SELECT sales.orders.order_id AS order_id, sales.orders.customer_id AS customer_id, sales.orders.status AS status, sales.orders.currency AS currency, sales.orders.amount AS amount, sales.orders.seats AS seats, sales.orders.price AS price, sales.orders.created_at AS created_at, sales.orders.paid_at AS paid_at, sales.orders.order_date AS order_date
FROM sales.orders
WHERE NOT (sales.orders.amount IS NOT NULL AND NOT coalesce(sales.orders.amount * 0 = 0, false) OR sales.orders.price IS NOT NULL AND NOT coalesce(sales.orders.price * 0 = 0, false))) AS numbers
WHERE numbers.amount IS NOT NULL AND NOT (numbers.seats IS NULL OR numbers.price IS NULL) AND CAST(numbers.amount AS NUMERIC(38, 10)) != CAST(numbers.seats AS NUMERIC(38, 10)) * CAST(numbers.price AS NUMERIC(38, 10)) AND abs(CAST(numbers.amount AS NUMERIC(38, 10)) - CAST(numbers.seats AS NUMERIC(38, 10)) * CAST(numbers.price AS NUMERIC(38, 10))) > 0.005;

-- accepted_values(status)
SELECT count(sales.orders.status) AS a0, count(CASE WHEN (sales.orders.status IS NOT NULL AND (sales.orders.status NOT IN ('open', 'paid', 'refunded'))) THEN 1 END) AS a1
FROM sales.orders;
SELECT sales.orders.status AS value, count(*) AS n, count(*) OVER () AS all_values, sum(count(*)) OVER () AS all_rows
FROM sales.orders
WHERE sales.orders.status IS NOT NULL AND (sales.orders.status NOT IN ('open', 'paid', 'refunded')) GROUP BY sales.orders.status ORDER BY count(*) DESC, sales.orders.status
 LIMIT 20;

-- new_values(currency)
SELECT baseline.currency
FROM sales.orders AS baseline
WHERE baseline.paid_at >= '2026-10-26 00:00:00' AND baseline.paid_at < '2026-11-23 00:00:00' AND baseline.currency IS NOT NULL
 LIMIT 1;
SELECT sales.orders.currency AS value, count(*) AS n, count(*) OVER () AS all_values, sum(count(*)) OVER () AS all_rows
FROM sales.orders
WHERE sales.orders.paid_at >= '2026-11-23 00:00:00' AND sales.orders.paid_at < '2026-11-24 00:00:00' AND sales.orders.currency IS NOT NULL AND (sales.orders.currency NOT IN (SELECT baseline.currency
FROM sales.orders AS baseline
WHERE baseline.paid_at >= '2026-10-26 00:00:00' AND baseline.paid_at < '2026-11-23 00:00:00' AND baseline.currency IS NOT NULL)) AND (sales.orders.currency NOT IN ('XTS')) GROUP BY sales.orders.currency ORDER BY count(*) DESC, sales.orders.currency
 LIMIT 20;

-- reference(customer_id)
SELECT count(sales.orders.customer_id) AS a0
FROM sales.orders;
SELECT sales.orders.customer_id AS value, count(*) AS n, count(*) OVER () AS all_values, sum(count(*)) OVER () AS all_rows
FROM sales.orders
WHERE sales.orders.customer_id IS NOT NULL AND NOT (EXISTS (SELECT *
FROM sales.customers AS ref
WHERE sales.orders.customer_id = ref.id)) GROUP BY sales.orders.customer_id ORDER BY count(*) DESC, sales.orders.customer_id
 LIMIT 20;

-- billed_customer (reference): connector 'billing' cannot be read here
SELECT count(sales.orders.customer_id) AS a0
FROM sales.orders;

-- distribution_shift(amount)
SELECT bucketed.bucket, bucketed.grp, bucketed.bin, count(*) AS n, sum(bucketed.value) AS total
FROM (SELECT date_trunc('day', sales.orders.paid_at) AS bucket, sales.orders.amount AS value, sales.orders.currency AS grp, CASE WHEN (abs(sales.orders.amount) < 0.001) THEN 0 WHEN (abs(sales.orders.amount) < 0.0017782794100389228) THEN 1 WHEN (abs(sales.orders.amount) < 0.0031622776601683794) THEN 2 WHEN (abs(sales.orders.amount) < 0.005623413251903491) THEN 3 WHEN (abs(sales.orders.amount) < 0.01) THEN 4 WHEN (abs(sales.orders.amount) < 0.01778279410038923) THEN 5 WHEN (abs(sales.orders.amount) < 0.03162277660168379) THEN 6 WHEN (abs(sales.orders.amount) < 0.05623413251903491) THEN 7 WHEN (abs(sales.orders.amount) < 0.1) THEN 8 WHEN (abs(sales.orders.amount) < 0.1778279410038923) THEN 9 WHEN (abs(sales.orders.amount) < 0.31622776601683794) THEN 10 WHEN (abs(sales.orders.amount) < 0.5623413251903491) THEN 11 WHEN (abs(sales.orders.amount) < 1.0) THEN 12 WHEN (abs(sales.orders.amount) < 1.7782794100389228) THEN 13 WHEN (abs(sales.orders.amount) < 3.1622776601683795) THEN 14 WHEN (abs(sales.orders.amount) < 5.623413251903491) THEN 15 WHEN (abs(sales.orders.amount) < 10.0) THEN 16 WHEN (abs(sales.orders.amount) < 17.78279410038923) THEN 17 WHEN (abs(sales.orders.amount) < 31.622776601683793) THEN 18 WHEN (abs(sales.orders.amount) < 56.23413251903491) THEN 19 WHEN (abs(sales.orders.amount) < 100.0) THEN 20 WHEN (abs(sales.orders.amount) < 177.82794100389228) THEN 21 WHEN (abs(sales.orders.amount) < 316.22776601683796) THEN 22 WHEN (abs(sales.orders.amount) < 562.341325190349) THEN 23 WHEN (abs(sales.orders.amount) < 1000.0) THEN 24 WHEN (abs(sales.orders.amount) < 1778.2794100389228) THEN 25 WHEN (abs(sales.orders.amount) < 3162.2776601683795) THEN 26 WHEN (abs(sales.orders.amount) < 5623.413251903491) THEN 27 WHEN (abs(sales.orders.amount) < 10000.0) THEN 28 WHEN (abs(sales.orders.amount) < 17782.794100389227) THEN 29 WHEN (abs(sales.orders.amount) < 31622.776601683792) THEN 30 WHEN (abs(sales.orders.amount) < 56234.13251903491) THEN 31 WHEN (abs(sales.orders.amount) < 100000.0) THEN 32 WHEN (abs(sales.orders.amount) < 177827.94100389228) THEN 33 WHEN (abs(sales.orders.amount) < 316227.7660168379) THEN 34 WHEN (abs(sales.orders.amount) < 562341.3251903491) THEN 35 WHEN (abs(sales.orders.amount) < 1000000.0) THEN 36 WHEN (abs(sales.orders.amount) < 1778279.410038923) THEN 37 WHEN (abs(sales.orders.amount) < 3162277.6601683795) THEN 38 WHEN (abs(sales.orders.amount) < 5623413.251903491) THEN 39 WHEN (abs(sales.orders.amount) < 10000000.0) THEN 40 WHEN (abs(sales.orders.amount) < 17782794.100389227) THEN 41 WHEN (abs(sales.orders.amount) < 31622776.60168379) THEN 42 WHEN (abs(sales.orders.amount) < 56234132.51903491) THEN 43 WHEN (abs(sales.orders.amount) < 100000000.0) THEN 44 WHEN (abs(sales.orders.amount) < 177827941.00389227) THEN 45 WHEN (abs(sales.orders.amount) < 316227766.01683795) THEN 46 WHEN (abs(sales.orders.amount) < 562341325.1903491) THEN 47 WHEN (abs(sales.orders.amount) < 1000000000.0) THEN 48 WHEN (abs(sales.orders.amount) < 1778279410.0389228) THEN 49 WHEN (abs(sales.orders.amount) < 3162277660.1683793) THEN 50 WHEN (abs(sales.orders.amount) < 5623413251.903491) THEN 51 WHEN (abs(sales.orders.amount) < 10000000000.0) THEN 52 WHEN (abs(sales.orders.amount) < 17782794100.38923) THEN 53 WHEN (abs(sales.orders.amount) < 31622776601.683792) THEN 54 WHEN (abs(sales.orders.amount) < 56234132519.034904) THEN 55 WHEN (abs(sales.orders.amount) < 100000000000.0) THEN 56 WHEN (abs(sales.orders.amount) < 177827941003.89227) THEN 57 WHEN (abs(sales.orders.amount) < 316227766016.83795) THEN 58 WHEN (abs(sales.orders.amount) < 562341325190.3491) THEN 59 WHEN (abs(sales.orders.amount) < 1000000000000.0) THEN 60 ELSE 61 END AS bin
FROM sales.orders
WHERE sales.orders.paid_at >= '2026-10-26 00:00:00' AND sales.orders.paid_at < '2026-11-24 00:00:00') AS bucketed
WHERE bucketed.value IS NOT NULL GROUP BY bucketed.bucket, bucketed.grp, bucketed.bin;

-- column_anomaly(amount)
SELECT bucketed.bucket, count(*) AS rows, count(bucketed.value) AS nonnull, count(DISTINCT bucketed.value) AS distinct_count, count(CASE WHEN (bucketed.value = 0) THEN 1 END) AS zeros, count(CASE WHEN (bucketed.value < 0) THEN 1 END) AS negatives, min(bucketed.value) AS min, max(bucketed.value) AS max, avg(1.0 * bucketed.value) AS mean, avg(1.0 * bucketed.value * bucketed.value) AS mean_square
FROM (SELECT date_trunc('day', sales.orders.paid_at) AS bucket, sales.orders.amount AS value
FROM sales.orders
WHERE sales.orders.paid_at >= '2026-10-26 00:00:00' AND sales.orders.paid_at < '2026-11-24 00:00:00') AS bucketed GROUP BY bucketed.bucket;

-- status_length (column_anomaly)
SELECT bucketed.bucket, count(*) AS rows, count(bucketed.value) AS nonnull, avg(1.0 * length(bucketed.value)) AS length
FROM (SELECT date_trunc('day', sales.orders.paid_at) AS bucket, sales.orders.status AS value
FROM sales.orders
WHERE sales.orders.paid_at >= '2026-10-26 00:00:00' AND sales.orders.paid_at < '2026-11-24 00:00:00') AS bucketed GROUP BY bucketed.bucket;

-- expect_column_values_to_not_be_null(customer_id)
SELECT count(*) AS a0, count(sales.orders.customer_id) AS a1
FROM sales.orders;
SELECT 0 AS dq_agent_check_no, sales.orders.order_id AS order_id, sales.orders.customer_id AS customer_id
FROM sales.orders
WHERE sales.orders.customer_id IS NULL ORDER BY sales.orders.order_id
 LIMIT 20;

-- expect_column_values_to_be_between(amount)
SELECT count(*) AS a0, count(sales.orders.amount) AS a1, count(CASE WHEN (sales.orders.amount <= 0 OR sales.orders.amount > 1000000) THEN 1 END) AS a2
FROM sales.orders;
SELECT 0 AS dq_agent_check_no, sales.orders.order_id AS order_id, sales.orders.amount AS amount
FROM sales.orders
WHERE sales.orders.amount <= 0 OR sales.orders.amount > 1000000 ORDER BY sales.orders.order_id
 LIMIT 20;

-- expect_column_values_to_be_in_set(currency)
SELECT count(CASE WHEN (sales.orders.status != 'refunded') THEN 1 END) AS a0, count(CASE WHEN (sales.orders.status != 'refunded') THEN sales.orders.currency END) AS a1, count(CASE WHEN (sales.orders.status != 'refunded' AND (sales.orders.currency NOT IN ('USD', 'EUR', 'GBP'))) THEN 1 END) AS a2
FROM sales.orders;
SELECT 0 AS dq_agent_check_no, sales.orders.order_id AS order_id, sales.orders.currency AS currency
FROM sales.orders
WHERE sales.orders.status != 'refunded' AND (sales.orders.currency NOT IN ('USD', 'EUR', 'GBP')) ORDER BY sales.orders.order_id
 LIMIT 20;

-- expect_column_values_to_be_unique(order_id)
SELECT count(*) AS a0, count(sales.orders.order_id) AS a1
FROM sales.orders;
SELECT coalesce(sum(anon_1.n), 0) AS coalesce_1
FROM (SELECT count(*) AS n
FROM sales.orders
WHERE sales.orders.order_id IS NOT NULL GROUP BY sales.orders.order_id
HAVING count(*) > 1) AS anon_1;
SELECT 0 AS dq_agent_check_no, sales.orders.order_id AS order_id
FROM sales.orders
WHERE sales.orders.order_id IS NOT NULL AND sales.orders.order_id IN (SELECT sales.orders.order_id
FROM sales.orders
WHERE sales.orders.order_id IS NOT NULL GROUP BY sales.orders.order_id
HAVING count(*) > 1) ORDER BY sales.orders.order_id
 LIMIT 20;

-- expect_column_value_lengths_to_be_between(currency)
SELECT count(*) AS a0, count(sales.orders.currency) AS a1, count(CASE WHEN (sales.orders.currency IS NOT NULL AND NOT (length(sales.orders.currency) >= 3 AND length(sales.orders.currency) <= 3)) THEN 1 END) AS a2
FROM sales.orders;
SELECT 0 AS dq_agent_check_no, sales.orders.order_id AS order_id, sales.orders.currency AS currency
FROM sales.orders
WHERE sales.orders.currency IS NOT NULL AND NOT (length(sales.orders.currency) >= 3 AND length(sales.orders.currency) <= 3) ORDER BY sales.orders.order_id
 LIMIT 20;

-- expect_column_mean_to_be_between(amount)
SELECT avg(1.0 * sales.orders.amount) AS a0
FROM sales.orders;

-- expect_compound_columns_to_be_unique(customer_id,created_at)
SELECT count(*) AS a0, count(CASE WHEN (NOT (sales.orders.customer_id IS NULL AND sales.orders.created_at IS NULL)) THEN 1 END) AS a1
FROM sales.orders;
SELECT coalesce(sum(anon_1.n), 0) AS coalesce_1
FROM (SELECT count(*) AS n
FROM sales.orders
WHERE sales.orders.customer_id IS NOT NULL AND sales.orders.created_at IS NOT NULL GROUP BY sales.orders.customer_id, sales.orders.created_at
HAVING count(*) > 1) AS anon_1;
SELECT 0 AS dq_agent_check_no, sales.orders.order_id AS order_id
FROM sales.orders
WHERE sales.orders.customer_id IS NOT NULL AND sales.orders.created_at IS NOT NULL AND (sales.orders.customer_id, sales.orders.created_at) IN (SELECT sales.orders.customer_id, sales.orders.created_at
FROM sales.orders
WHERE sales.orders.customer_id IS NOT NULL AND sales.orders.created_at IS NOT NULL GROUP BY sales.orders.customer_id, sales.orders.created_at
HAVING count(*) > 1) ORDER BY sales.orders.order_id
 LIMIT 20;

-- expect_column_values_to_be_increasing(created_at)
SELECT count(*) AS a0, count(sales.orders.created_at) AS a1
FROM sales.orders;
SELECT count(CASE WHEN (anon_1.previous IS NOT NULL AND anon_1.value < anon_1.previous) THEN 1 END) AS count_1
FROM (SELECT sales.orders.order_id AS k0, sales.orders.created_at AS value, lag(sales.orders.created_at) OVER (ORDER BY sales.orders.order_id) AS previous
FROM sales.orders
WHERE sales.orders.created_at IS NOT NULL) AS anon_1;
SELECT 0 AS dq_agent_check_no, sales.orders.order_id AS order_id, sales.orders.created_at AS created_at
FROM sales.orders
WHERE sales.orders.order_id IN (SELECT anon_1.k0
FROM (SELECT sales.orders.order_id AS k0, sales.orders.created_at AS value, lag(sales.orders.created_at) OVER (ORDER BY sales.orders.order_id) AS previous
FROM sales.orders
WHERE sales.orders.created_at IS NOT NULL) AS anon_1
WHERE anon_1.previous IS NOT NULL AND anon_1.value < anon_1.previous) ORDER BY sales.orders.order_id
 LIMIT 20;

-- expect_table_row_count_to_be_between
SELECT count(*) AS a0
FROM sales.orders;

-- expect_column_values_to_match_regex(currency): runs through Great Expectations, which writes its own SQL: not compiled here

-- one run of the whole suite merges the scans and findings above into:
SELECT count(*) AS a0, max(CASE WHEN (sales.orders.created_at <= '2026-11-24 06:30:00+00:00') THEN sales.orders.created_at END) AS a1, count(CASE WHEN (sales.orders.amount IS NOT NULL AND NOT coalesce(sales.orders.amount * 0 = 0, false) OR sales.orders.price IS NOT NULL AND NOT coalesce(sales.orders.price * 0 = 0, false)) THEN 1 END) AS a2, count(sales.orders.amount) AS a3, count(CASE WHEN (sales.orders.amount IS NOT NULL AND NOT (sales.orders.seats IS NULL OR sales.orders.price IS NULL)) THEN 1 END) AS a4, count(CASE WHEN (sales.orders.amount IS NOT NULL AND NOT (sales.orders.seats IS NULL OR sales.orders.price IS NULL) AND CAST(sales.orders.amount AS NUMERIC(38, 10)) != CAST(sales.orders.seats AS NUMERIC(38, 10)) * CAST(sales.orders.price AS NUMERIC(38, 10)) AND abs(CAST(sales.orders.amount AS NUMERIC(38, 10)) - CAST(sales.orders.seats AS NUMERIC(38, 10)) * CAST(sales.orders.price AS NUMERIC(38, 10))) > 0.005) THEN 1 END) AS a5, count(sales.orders.status) AS a6, count(CASE WHEN (sales.orders.status IS NOT NULL AND (sales.orders.status NOT IN ('open', 'paid', 'refunded'))) THEN 1 END) AS a7, count(sales.orders.customer_id) AS a8, count(CASE WHEN (sales.orders.amount <= 0 OR sales.orders.amount > 1000000) THEN 1 END) AS a9, count(CASE WHEN (sales.orders.status != 'refunded') THEN 1 END) AS a10, count(CASE WHEN (sales.orders.status != 'refunded') THEN sales.orders.currency END) AS a11, count(CASE WHEN (sales.orders.status != 'refunded' AND (sales.orders.currency NOT IN ('USD', 'EUR', 'GBP'))) THEN 1 END) AS a12, count(sales.orders.order_id) AS a13, count(sales.orders.currency) AS a14, count(CASE WHEN (sales.orders.currency IS NOT NULL AND NOT (length(sales.orders.currency) >= 3 AND length(sales.orders.currency) <= 3)) THEN 1 END) AS a15, avg(1.0 * sales.orders.amount) AS a16, count(CASE WHEN (NOT (sales.orders.customer_id IS NULL AND sales.orders.created_at IS NULL)) THEN 1 END) AS a17, count(sales.orders.created_at) AS a18
FROM sales.orders;
SELECT anon_1.dq_agent_check_no, anon_1.order_id, anon_1.customer_id, anon_1.amount, anon_1.currency, anon_1.created_at
FROM (SELECT 0 AS dq_agent_check_no, sales.orders.order_id AS order_id, sales.orders.customer_id AS customer_id, sales.orders.amount AS amount, sales.orders.currency AS currency, sales.orders.created_at AS created_at
FROM sales.orders
WHERE sales.orders.customer_id IS NULL ORDER BY sales.orders.order_id
 LIMIT 20) AS anon_1 UNION ALL SELECT anon_2.dq_agent_check_no, anon_2.order_id, anon_2.customer_id, anon_2.amount, anon_2.currency, anon_2.created_at
FROM (SELECT 1 AS dq_agent_check_no, sales.orders.order_id AS order_id, sales.orders.customer_id AS customer_id, sales.orders.amount AS amount, sales.orders.currency AS currency, sales.orders.created_at AS created_at
FROM sales.orders
WHERE sales.orders.amount <= 0 OR sales.orders.amount > 1000000 ORDER BY sales.orders.order_id
 LIMIT 20) AS anon_2 UNION ALL SELECT anon_3.dq_agent_check_no, anon_3.order_id, anon_3.customer_id, anon_3.amount, anon_3.currency, anon_3.created_at
FROM (SELECT 2 AS dq_agent_check_no, sales.orders.order_id AS order_id, sales.orders.customer_id AS customer_id, sales.orders.amount AS amount, sales.orders.currency AS currency, sales.orders.created_at AS created_at
FROM sales.orders
WHERE sales.orders.status != 'refunded' AND (sales.orders.currency NOT IN ('USD', 'EUR', 'GBP')) ORDER BY sales.orders.order_id
 LIMIT 20) AS anon_3 UNION ALL SELECT anon_4.dq_agent_check_no, anon_4.order_id, anon_4.customer_id, anon_4.amount, anon_4.currency, anon_4.created_at
FROM (SELECT 3 AS dq_agent_check_no, sales.orders.order_id AS order_id, sales.orders.customer_id AS customer_id, sales.orders.amount AS amount, sales.orders.currency AS currency, sales.orders.created_at AS created_at
FROM sales.orders
WHERE sales.orders.order_id IS NOT NULL AND sales.orders.order_id IN (SELECT sales.orders.order_id
FROM sales.orders
WHERE sales.orders.order_id IS NOT NULL GROUP BY sales.orders.order_id
HAVING count(*) > 1) ORDER BY sales.orders.order_id
 LIMIT 20) AS anon_4 UNION ALL SELECT anon_5.dq_agent_check_no, anon_5.order_id, anon_5.customer_id, anon_5.amount, anon_5.currency, anon_5.created_at
FROM (SELECT 4 AS dq_agent_check_no, sales.orders.order_id AS order_id, sales.orders.customer_id AS customer_id, sales.orders.amount AS amount, sales.orders.currency AS currency, sales.orders.created_at AS created_at
FROM sales.orders
WHERE sales.orders.currency IS NOT NULL AND NOT (length(sales.orders.currency) >= 3 AND length(sales.orders.currency) <= 3) ORDER BY sales.orders.order_id
 LIMIT 20) AS anon_5 UNION ALL SELECT anon_6.dq_agent_check_no, anon_6.order_id, anon_6.customer_id, anon_6.amount, anon_6.currency, anon_6.created_at
FROM (SELECT 5 AS dq_agent_check_no, sales.orders.order_id AS order_id, sales.orders.customer_id AS customer_id, sales.orders.amount AS amount, sales.orders.currency AS currency, sales.orders.created_at AS created_at
FROM sales.orders
WHERE sales.orders.customer_id IS NOT NULL AND sales.orders.created_at IS NOT NULL AND (sales.orders.customer_id, sales.orders.created_at) IN (SELECT sales.orders.customer_id, sales.orders.created_at
FROM sales.orders
WHERE sales.orders.customer_id IS NOT NULL AND sales.orders.created_at IS NOT NULL GROUP BY sales.orders.customer_id, sales.orders.created_at
HAVING count(*) > 1) ORDER BY sales.orders.order_id
 LIMIT 20) AS anon_6 UNION ALL SELECT anon_7.dq_agent_check_no, anon_7.order_id, anon_7.customer_id, anon_7.amount, anon_7.currency, anon_7.created_at
FROM (SELECT 6 AS dq_agent_check_no, sales.orders.order_id AS order_id, sales.orders.customer_id AS customer_id, sales.orders.amount AS amount, sales.orders.currency AS currency, sales.orders.created_at AS created_at
FROM sales.orders
WHERE sales.orders.order_id IN (SELECT anon_8.k0
FROM (SELECT sales.orders.order_id AS k0, sales.orders.created_at AS value, lag(sales.orders.created_at) OVER (ORDER BY sales.orders.order_id) AS previous
FROM sales.orders
WHERE sales.orders.created_at IS NOT NULL) AS anon_8
WHERE anon_8.previous IS NOT NULL AND anon_8.value < anon_8.previous) ORDER BY sales.orders.order_id
 LIMIT 20) AS anon_7 ORDER BY dq_agent_check_no, order_id;
