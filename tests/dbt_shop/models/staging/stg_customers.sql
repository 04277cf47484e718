select id, email, region from {{ source('raw', 'customers') }}
