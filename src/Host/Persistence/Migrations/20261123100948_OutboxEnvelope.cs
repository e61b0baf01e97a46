using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Integration.Host.Persistence.Migrations
{
    /// <inheritdoc />
    public partial class OutboxEnvelope : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "envelope",
                table: "outbox_messages",
                type: "jsonb",
                nullable: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "envelope",
                table: "outbox_messages");
        }
    }
}
